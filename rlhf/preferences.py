"""Preference pairs in every format the kit reads (reward and DPO stages, `rlhf score`), normalised to one shape.

Formats (detected per row):
- ours (`rlhf annotate`, `rlhf label export`): {"instruction", "input"?, "chosen", "rejected", "annotator"?, ...}
- TRL standard: {"prompt", "chosen", "rejected"} with plain strings
- TRL conversational: "chosen"/"rejected" (and optional "prompt") as lists of {"role", "content"} messages
- Anthropic HH-RLHF: "chosen"/"rejected" transcripts "\n\nHuman: ...\n\nAssistant: ..."; the shared dialogue up
  to the final "\n\nAssistant:" is the prompt, the two final replies are the responses.

Every pair becomes {"id", "instruction", "input", "chosen", "rejected", "annotator", "format"} (plus
"chosen_finished" / "rejected_finished", whether each response ended with EOS, when the row has them), and a
dialogue's pair also keeps the prompt conversation as "messages" (TRL conversational rows, HH transcripts parsed
into user and assistant turns, or our rows that carry "messages"). The reward model then sees
render_prompt(pair, template) + response + end of turn, the same prompt text the policy sees: under `alpaca` the
instruction formatted (a dialogue's instruction is its transcript, "Human: ...\n\nAssistant: ...\n\nHuman: ..."),
under `chat` the messages through the tokenizer's chat template.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from rlhf.data import read_records
from rlhf.distributed import main_print
from rlhf.errors import UserError
from rlhf.io import atomic_write_jsonl
from rlhf.messages import check_messages, transcript
from rlhf.sources import stage_sources

HH_ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def hh_messages(dialogue: str) -> list[dict]:
    """An HH-RLHF dialogue ("Human: ...\n\nAssistant: ...\n\nHuman: ...") as user/assistant messages. Text before
    the first speaker tag belongs to the first user turn; consecutive turns of one speaker are joined (chat
    templates expect turns to alternate)."""
    parts = _HH_TURN.split(dialogue)
    messages: list[dict] = []
    lead = parts[0].strip()
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        content = content.strip()
        if lead:
            content, lead = f"{lead}\n\n{content}".strip(), ""
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n\n" + content
        else:
            messages.append({"role": role, "content": content})
    if lead:
        messages.insert(0, {"role": "user", "content": lead})
    return messages


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
    instruction, input_, messages = "", "", None
    if isinstance(chosen, list) or isinstance(rejected, list):
        if not (isinstance(chosen, list) and isinstance(rejected, list)) or not chosen or not rejected:
            raise UserError(
                "conversational 'chosen' and 'rejected' must both be non-empty message lists", path, where
            )
        chosen = check_messages(chosen, path, where, key="chosen")
        rejected = check_messages(rejected, path, where, key="rejected")
        prompt = row.get("prompt")
        if prompt is None:  # implicit prompt: everything before the final assistant message
            prompt = chosen[:-1]
            if transcript(prompt) != transcript(rejected[:-1]):
                return "prompt differs between chosen and rejected"
            if not prompt:
                raise UserError("empty prompt/instruction", path, where)
            chosen, rejected = chosen[-1:], rejected[-1:]
        if not isinstance(prompt, list):
            raise UserError("conversational 'prompt' must be a message list", path, where)
        messages = check_messages(prompt, path, where, key="prompt")
        instruction = transcript(messages)
        chosen = transcript(chosen).split(": ", 1)[-1]
        rejected = transcript(rejected).split(": ", 1)[-1]
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
            if row.get("messages") is not None:  # a conversation's prompt (e.g. the labeling export's)
                messages = check_messages(row["messages"], path, where)
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
            messages = hh_messages(instruction)
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
    for key in (
        "chosen_finished",
        "rejected_finished",
    ):  # whether the response ended with EOS (rlhf annotate)
        if key in row:
            if not isinstance(row[key], bool):
                raise UserError(f"key '{key}': expected true or false", path, where)
            out[key] = row[key]
    if messages is not None:
        out["messages"] = messages
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


def prompt_key(pair: dict) -> tuple:
    """What makes two pairs share a prompt: the same instruction, input and conversation."""
    return (pair["instruction"], pair.get("input", ""), repr(pair.get("messages")))


def swapped(pair: dict) -> dict:
    """The pair with its chosen and rejected sides (and their per-side fields, e.g. *_finished) exchanged."""
    out = dict(pair)
    for key in pair:
        if key.startswith("chosen"):
            other = "rejected" + key[len("chosen") :]
            if other in pair:
                out[key], out[other] = pair[other], pair[key]
    return out


def hold_out_by_prompt(pairs: list[dict], n_eval: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) with about `n_eval` held-out pairs, whole prompts at a time: the prompts in the order
    they first appear in `pairs` go to the held-out side until it holds >= n_eval pairs. Pairs that share a
    prompt (several pairs of one prompt's samples) never straddle the split, so held-out accuracy is measured on
    prompts the model never trained on. When every prompt is unique this is pairs[n_eval:], pairs[:n_eval]."""
    if n_eval <= 0:
        return pairs, []
    keys = [prompt_key(p) for p in pairs]
    sizes = Counter(keys)
    held: set = set()
    count = 0
    for key in keys:
        if count >= n_eval:
            break
        if key not in held:
            held.add(key)
            count += sizes[key]
    keep = [p for p in pairs if prompt_key(p) not in held]
    return keep, [p for p in pairs if prompt_key(p) in held]


class StagePairs(NamedTuple):
    train: list[dict]
    held_out: list[dict]
    dropped_held_out_prompts: int  # training pairs left out because their prompt is among the held-out ones


def drop_held_out_prompts(pairs: list[dict], held_out: list[dict]) -> tuple[list[dict], int]:
    """The pairs whose prompt is none of `held_out`'s prompts, and how many were dropped. A stage's own split
    (hold_out_by_prompt) never trains on a held-out prompt; a held-out file given beside the pairs gets the same
    guarantee, e.g. an earlier run's heldout_pairs.jsonl beside a pairs file that still holds those pairs."""
    held = {prompt_key(p) for p in held_out}
    kept = [p for p in pairs if prompt_key(p) not in held]
    return kept, len(pairs) - len(kept)


def stage_pairs(cfg) -> StagePairs:
    """(train, held-out, dropped) pairs of a stage reading `pairs_path` / `eval_pairs_path` (or TRL's dataset_*
    keys), as the reward and DPO stages split them: shuffled with `cfg.seed`; held out from the eval source when
    there is one (training pairs of its prompts dropped and counted), else the first `eval_fraction` of the shuffled
    pairs, whole prompts at a time; the training pairs capped at `max_pairs`."""
    source, held_out = stage_sources(cfg, "pairs_path", "eval_pairs_path")
    pairs = load_preferences(source)
    random.Random(cfg.seed).shuffle(pairs)
    dropped = 0
    if held_out is not None:
        eval_pairs = load_preferences(held_out)
        pairs, dropped = drop_held_out_prompts(pairs, eval_pairs)
        if dropped and not pairs:  # else the stage would blame max_length for the empty training set
            raise UserError(
                f"every pair's prompt is held out in {held_out}: no training pairs left",
                str(source),
                "key 'pairs_path'",
            )
        if dropped:
            main_print(
                f"{source}: {dropped} pairs left out of training: their prompts are held out in {held_out}"
            )
    else:
        pairs, eval_pairs = hold_out_by_prompt(pairs, int(round(len(pairs) * cfg.eval_fraction)))
    if cfg.max_pairs:
        pairs = pairs[: cfg.max_pairs]
    return StagePairs(pairs, eval_pairs, dropped)


HELD_OUT_FILE = "heldout_pairs.jsonl"


def write_held_out(out_dir: str | Path, pairs: list[dict]) -> None:
    """The held-out pairs a stage scored, as read (our pair format), into out_dir/heldout_pairs.jsonl: another
    run's `eval_pairs_path` then scores it on exactly these pairs (say, a reward model trained on more pairs)."""
    if pairs:
        atomic_write_jsonl(
            Path(out_dir) / HELD_OUT_FILE, [{k: v for k, v in p.items() if k != "format"} for p in pairs]
        )
