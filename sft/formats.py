"""SFT rows in the formats people bring, as one of three examples the stage trains on.

A row is read by `rlhf.data.read_records` (json/jsonl/gz, a saved `datasets` dir, ...) and recognised by its keys,
in this order (hub datasets often carry extra columns: tatsu-lab/alpaca has `text` next to its Alpaca keys, and
UltraChat a `prompt` string next to `messages`):

1. `messages`: a conversation, TRL's conversational language-modelling format (optional system message first);
2. `prompt` + `completion`: TRL's prompt-completion format, each a string or a list of messages;
3. `instruction` (+ optional `input`) + `output`: Stanford Alpaca's rows (any of these keys: a row with an
   `output` but no `instruction` is refused as an Alpaca row missing its instruction);
4. `text`: plain language modelling.

Each becomes one example:
- an Alpaca example {"instruction", "input", "output"};
- a conversation {"messages", "train_from"} (template `chat` only): the loss covers every assistant turn from
  message `train_from` on (0 for `messages` rows: all of them, as TRL's `assistant_only_loss`; the first
  completion message for prompt-completion rows: the completion only, as TRL's `completion_only_loss`);
- a text example {"text"}: loss on every token, the same under both templates.

How each format meets each template:

| row                      | template: alpaca                        | template: chat                   |
|--------------------------|-----------------------------------------|----------------------------------|
| instruction/input/output | Alpaca's prompt; loss on output + EOS   | one user turn + the reply        |
| messages                 | a single user -> assistant exchange is  | rendered by the chat template;   |
|                          | an Alpaca row; a system message or more | loss on every assistant turn +   |
|                          | turns: refused (hint: template: chat)   | its end-of-turn text             |
| prompt/completion text   | Alpaca's prompt around `prompt`,        | one user turn + the reply        |
|                          | `completion` as the output              |                                  |
| prompt/completion lists  | as `messages`                           | prompt + completion; loss on the |
|                          |                                         | completion's assistant turns     |
| text                     | the text + EOS; loss on every token     | the same                         |

Prompt-completion strings go through the template rather than being concatenated raw (TRL's choice for strings)
because the template is the kit's contract between stages: reward and PPO render their prompts, `prompt` strings
included, with the template recorded in the SFT manifest, so a policy trained on raw `prompt + completion` text
would meet prompts in a format it never saw. A user with text already in its final format has `text`.

Every row is validated here, before any model loads: one UserError names the file, the row and the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rlhf.data import read_records, require_str
from rlhf.errors import UserError
from rlhf.messages import check_messages

_ALPACA_KEYS = {"instruction", "input", "output"}
FORMATS = "Alpaca rows (instruction, input, output), messages, prompt/completion or text"


def load_sft_rows(path: str | Path, template: str) -> list[dict]:
    """The examples of the rows at `path` under `template` (see the module doc), every row validated."""
    return [sft_example(row, path, template) for row in read_records(path)]


def sft_example(row: dict, path: str | Path, template: str) -> dict:
    """One row as an Alpaca, conversation or text example. The example keeps where it came from (`_path`, `_row`)
    so that the tokenizer's chat template, applied later, can name the row it refuses."""
    where = row.get("_row", "?")
    row = {
        k: v for k, v in row.items() if v is not None
    }  # a saved dataset holds every column, None where unset
    if "messages" in row:
        messages = check_conversation(row["messages"], path, where, "messages")
        example = _conversation(messages, 0, template, path, where, "messages")
    elif "completion" in row or ("prompt" in row and not _ALPACA_KEYS & row.keys() and "text" not in row):
        example = _prompt_completion(row, path, where, template)
    elif _ALPACA_KEYS & row.keys():
        example = {
            "instruction": require_str(row, "instruction", path),
            "input": require_str(row, "input", path, optional=True),
            "output": require_str(row, "output", path, nonempty=False),
        }
    elif "text" in row:
        example = {"text": require_str(row, "text", path)}
    else:
        keys = ", ".join(sorted(k for k in row if k != "_row")) or "none"
        raise UserError(f"expected {FORMATS}; found keys: {keys}", path, where)
    example["_path"], example["_row"] = str(path), where
    return example


def check_conversation(value, path: str | Path, where: str, key: str) -> list[dict]:
    """A list of messages a chat template can render: a system message only first, then a user message."""
    messages = check_messages(value, path, where, key)
    for i, m in enumerate(messages):
        if m["role"] == "system" and i > 0:
            raise UserError(f"key '{key}' message {i + 1}: a system message may only come first", path, where)
    first = next((m for m in messages if m["role"] != "system"), None)
    if first is None or first["role"] != "user":
        raise UserError(
            f"key '{key}': expected a user message first (after an optional system message)", path, where
        )
    return messages


def _prompt_completion(row: dict, path, where: str, template: str) -> dict:
    for key in ("prompt", "completion"):
        if key not in row or row[key] is None:
            raise UserError("missing; expected a string or a list of messages", path, f"{where}: key '{key}'")
        if not isinstance(row[key], (str, list)):
            raise UserError(
                f"expected a string or a list of messages, got {type(row[key]).__name__}",
                path,
                f"{where}: key '{key}'",
            )
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": require_str(row, "prompt", path)}]
    else:
        prompt = check_conversation(prompt, path, where, "prompt")
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    else:
        completion = check_messages(completion, path, where, "completion")
        for i, m in enumerate(completion):
            if m["role"] == "system":
                raise UserError(
                    f"key 'completion' message {i + 1}: a system message may only come first in the prompt",
                    path,
                    where,
                )
        if not any(m["role"] == "assistant" for m in completion):
            raise UserError("key 'completion': expected an assistant message to train on", path, where)
    return _conversation(prompt + completion, len(prompt), template, path, where, "prompt")


def _conversation(messages: list[dict], train_from: int, template: str, path, where: str, key: str) -> dict:
    if not any(m["role"] == "assistant" for m in messages[train_from:]):
        raise UserError(f"key '{key}': expected an assistant message to train on", path, where)
    if template == "chat":
        return {"messages": messages, "train_from": train_from}
    # The Alpaca template holds one instruction and one response, nothing more.
    if messages[0]["role"] == "system":
        raise UserError(
            f"key '{key}': a system message has no place in the Alpaca template; use template: chat",
            path,
            where,
        )
    if [m["role"] for m in messages] != ["user", "assistant"]:
        raise UserError(
            f"key '{key}': {len(messages)} messages; the Alpaca template holds one user message and one "
            "assistant reply: use template: chat for multi-turn conversations",
            path,
            where,
        )
    return {"instruction": messages[0]["content"], "input": "", "output": messages[1]["content"]}


def example_kind(example: dict) -> str:
    """ "alpaca", "conversation" or "text"."""
    if "messages" in example:
        return "conversation"
    return "text" if "text" in example and "instruction" not in example else "alpaca"


def fingerprint_rows(examples: list[dict]) -> str:
    """A digest of what the examples train on (the manifest's data_fingerprint). Alpaca examples hash as they
    always have ([instruction, input, output]), so a finished Alpaca run keeps its fingerprint."""
    h = hashlib.sha256()
    for e in examples:
        kind = example_kind(e)
        if kind == "alpaca":
            item = [e["instruction"], e.get("input", ""), e["output"]]
        elif kind == "conversation":
            item = ["messages", e["messages"], e["train_from"]]
        else:
            item = ["text", e["text"]]
        h.update(json.dumps(item, ensure_ascii=False).encode())
    return h.hexdigest()
