"""Prompt rows for everything that samples from a policy (PPO, `rlhf pairs`, `rlhf compare`, `rlhf generate`,
the labeling app's checkpoint comparison), read from any of the formats users have:

- Alpaca: {"instruction", "input"?, "output"?}
- TRL prompt-only: {"prompt": "text"} or {"prompt": [messages ending with a user turn]}, optional "completion"
  (a string or one assistant message list: the reference answer)
- conversations: {"messages": [...]} ending with a user turn, or with an assistant reply (held as the reference
  answer; the conversation before it is the prompt)

Every row becomes {"instruction", "input", "output"} (plus "kind"/"style"/"id" when given, and "messages" for a
conversation). `instruction` is what a person reads and what the Alpaca template formats: the prompt text, or the
conversation's transcript ("Human: ...\\n\\nAssistant: ..."). `messages` is what the chat template renders
(rlhf.templates.render_prompt). Bad rows are refused with the file and row named.
"""

from __future__ import annotations

from pathlib import Path

from rlhf.data import read_records, require_str
from rlhf.errors import UserError
from rlhf.messages import check_messages, transcript

EXTRA_KEYS = ("kind", "style", "id")


def _conversation(messages: list[dict], path, where: str, key: str) -> tuple[list[dict], str]:
    """(prompt messages, reference answer) of a conversation: a final assistant reply is the reference."""
    reference = ""
    if messages[-1]["role"] == "assistant":
        reference, messages = messages[-1]["content"], messages[:-1]
    if not messages or messages[-1]["role"] != "user":
        raise UserError(
            f"key '{key}': expected a conversation ending with a user turn (or a user turn and its reply)",
            path,
            where,
        )
    return messages, reference


def _completion(row: dict, path, where: str) -> str:
    value = row.get("completion")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    reply = check_messages(value, path, where, key="completion")
    if len(reply) != 1 or reply[0]["role"] != "assistant":
        raise UserError("key 'completion': expected a string or one assistant message", path, where)
    return reply[0]["content"]


def normalise_prompt_row(row: dict, path: str | Path) -> dict:
    """One prompt row in the kit's shape (see the module docstring), or one UserError naming file, row and key."""
    where = row.get("_row", "?")
    messages = None
    if "instruction" in row:
        out = {
            "instruction": require_str(row, "instruction", path),
            "input": require_str(row, "input", path, optional=True),
            "output": require_str(row, "output", path, optional=True, nonempty=False),
        }
    elif "prompt" in row:
        prompt = row["prompt"]
        if isinstance(prompt, str):
            text = require_str(row, "prompt", path)
        elif isinstance(prompt, list):
            messages, _ = _conversation(
                check_messages(prompt, path, where, key="prompt"), path, where, "prompt"
            )
            text = transcript(messages)
        else:
            raise UserError(
                f"key 'prompt': expected a string or a message list, got {type(prompt).__name__}", path, where
            )
        out = {"instruction": text, "input": "", "output": _completion(row, path, where)}
    elif "messages" in row:
        messages, reference = _conversation(
            check_messages(row["messages"], path, where), path, where, "messages"
        )
        out = {"instruction": transcript(messages), "input": "", "output": reference}
    else:
        raise UserError(
            "missing; expected 'instruction' (Alpaca), 'prompt' (a string or messages) or 'messages'",
            path,
            f"{where}: key 'instruction'",
        )
    if not out["instruction"].strip():
        raise UserError("empty prompt; expected text", path, where)
    if messages is not None:
        out["messages"] = messages
    for extra in EXTRA_KEYS:
        if extra in row:
            out[extra] = row[extra]
    return out


def load_prompt_rows(path: str | Path) -> list[dict]:
    """Every row of a prompts file (any source `rlhf.data.read_records` reads), normalised and validated."""
    return [normalise_prompt_row(row, path) for row in read_records(path)]


def display_text(row: dict) -> str:
    """The prompt of a normalised row as a person reads it (pairs files, reports, the labeling app)."""
    from rlhf.templates import display_prompt

    return display_prompt(row["instruction"], row.get("input", "") or "")
