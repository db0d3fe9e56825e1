"""Preference pairs in every format the reward stage reads, normalised to one shape.

Formats (detected per row):
- ours (`rlhf annotate`, `rlhf label export`): {"instruction", "input"?, "chosen", "rejected", "annotator"?, ...}
- TRL standard: {"prompt", "chosen", "rejected"} with plain strings
- TRL conversational: "chosen"/"rejected" (and optional "prompt") as lists of {"role", "content"} messages
- Anthropic HH-RLHF: "chosen"/"rejected" transcripts "\n\nHuman: ...\n\nAssistant: ..."; the shared dialogue up
  to the final "\n\nAssistant:" is the prompt, the two final replies are the responses.

Every pair becomes {"id", "instruction", "input", "chosen", "rejected", "annotator", "format"}; the reward model
then sees format_prompt(instruction, input) + response, the same prompt text the policy sees. Dialogues become
the instruction as "Human: ...\n\nAssistant: ...\n\nHuman: ..." text.
"""

from __future__ import annotations

from pathlib import Path

from rlhf.data import read_records
from rlhf.distributed import main_print
from rlhf.errors import UserError

HH_ASSISTANT = "\n\nAssistant:"


def _messages_to_text(messages: list, path, where: str) -> str:
    turns = []
    for m in messages:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("content"), str)
            or not isinstance(m.get("role"), str)
        ):
            raise UserError("expected messages of the form {'role': str, 'content': str}", path, where)
        name = {"user": "Human", "assistant": "Assistant", "system": "System"}.get(
            m["role"], m["role"].title()
        )
        turns.append(f"{name}: {m['content'].strip()}")
    return "\n\n".join(turns)


def _split_hh(text: str) -> tuple[str, str] | None:
    i = text.rfind(HH_ASSISTANT)
    if i < 0:
        return None
    dialogue = text[:i].strip()
    return dialogue, text[i + len(HH_ASSISTANT) :].strip()


def _normalise(row: dict, path) -> dict | str:
    """One pair in our shape, or a string naming why the row is skipped (counted, not fatal)."""
    where = row.get("_row", "?")
    for key in ("chosen", "rejected"):
        if key not in row:
            raise UserError(f"missing key '{key}'; expected a preference pair", path, where)
    chosen, rejected = row["chosen"], row["rejected"]
    fmt = "ours"
    instruction, input_ = "", ""
    if isinstance(chosen, list) or isinstance(rejected, list):
        if not (isinstance(chosen, list) and isinstance(rejected, list)) or not chosen or not rejected:
            raise UserError(
                "conversational 'chosen' and 'rejected' must both be non-empty message lists", path, where
            )
        prompt = row.get("prompt")
        if prompt is None:  # implicit prompt: everything before the final assistant message
            prompt = chosen[:-1]
            if _messages_to_text(prompt, path, where) != _messages_to_text(rejected[:-1], path, where):
                return "prompt differs between chosen and rejected"
            chosen, rejected = chosen[-1:], rejected[-1:]
        if not isinstance(prompt, list):
            raise UserError("conversational 'prompt' must be a message list", path, where)
        instruction = _messages_to_text(prompt, path, where)
        chosen = _messages_to_text(chosen, path, where).split(": ", 1)[-1]
        rejected = _messages_to_text(rejected, path, where).split(": ", 1)[-1]
        fmt = "trl-conversational"
    else:
        for key, value in (("chosen", chosen), ("rejected", rejected)):
            if not isinstance(value, str):
                raise UserError(
                    f"key '{key}': expected a string or a message list, got {type(value).__name__}",
                    path,
                    where,
                )
        if "instruction" in row:
            instruction, input_ = row["instruction"], row.get("input") or ""
            if not isinstance(instruction, str) or not isinstance(input_, str):
                raise UserError("keys 'instruction'/'input' must be strings", path, where)
        elif "prompt" in row:
            instruction, fmt = row["prompt"], "trl"
            if not isinstance(instruction, str):
                raise UserError("key 'prompt': expected a string or a message list", path, where)
        elif chosen.lstrip().startswith("Human:") or "\n\nHuman:" in chosen:
            a, b = _split_hh(chosen), _split_hh(rejected)
            if a is None or b is None:
                raise UserError("HH transcript without a final '\\n\\nAssistant:' reply", path, where)
            if a[0] != b[0]:
                return "prompt differs between chosen and rejected"
            if not a[1] or not b[1]:
                # Real HH data has a few empty final replies: a transcript, not a typo; skip and count it.
                return "empty final assistant reply"
            instruction, chosen, rejected, fmt = a[0], a[1], b[1], "hh-rlhf"
        else:
            raise UserError("no prompt: expected 'instruction', 'prompt' or HH-RLHF transcripts", path, where)
    if not instruction.strip():
        raise UserError("empty prompt/instruction", path, where)
    for key, value in (("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            raise UserError(f"key '{key}': empty response", path, where)
    if chosen == rejected:
        raise UserError("chosen is identical to rejected; a pair must differ", path, where)
    margin = row.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise UserError(f"key 'margin': expected a number, got {type(margin).__name__}", path, where)
    out = {
        "id": str(row.get("id", where)),
        "instruction": instruction,
        "input": input_,
        "chosen": chosen,
        "rejected": rejected,
        "annotator": str(row.get("annotator", "")),
        "format": fmt,
    }
    if margin is not None:
        out["margin"] = float(margin)
    return out


def load_preferences(path: str | Path, *, verbose: bool = True) -> list[dict]:
    """Read, validate and normalise preference pairs; exact duplicates and HH rows whose two transcripts do not
    share a prompt are dropped and counted."""
    rows = read_records(path)
    pairs, seen, skipped, duplicates = [], set(), {}, 0
    for row in rows:
        pair = _normalise(row, path)
        if isinstance(pair, str):
            skipped[pair] = skipped.get(pair, 0) + 1
            continue
        key = (pair["instruction"], pair["input"], pair["chosen"], pair["rejected"])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        pairs.append(pair)
    if verbose and (duplicates or skipped):
        notes = [f"{duplicates} exact duplicate pairs"] + [f"{n} rows: {why}" for why, n in skipped.items()]
        main_print(f"pairs: {path}: dropped " + "; ".join(notes))
    if not pairs:
        raise UserError("no usable preference pairs", path)
    return pairs
