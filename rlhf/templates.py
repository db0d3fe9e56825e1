"""Prompt templates: how a prompt row becomes the text a model sees.

Two templates, recorded in every stage's manifest so the policy, the reward model and the PPO rollouts all see the
exact same prompt text:
- `alpaca`: Stanford Alpaca's two templates (the default, for base models), with Alpaca's exact parity.
- `chat`: the tokenizer's own chat template (`tokenizer.apply_chat_template`), for instruction-tuned chat models.

A prompt row is a dict with `instruction` (and optional `input`): the prompt as a person reads it. Rows that came
from conversations also carry `messages`: the prompt as chat messages ({"role", "content"}, ending with a user
turn). `alpaca` formats the instruction text; `chat` renders the messages (or one user turn holding the
instruction text when the row has none) with the generation prompt added.

Chat-rendered text already holds the template's special tokens (e.g. Llama 3's <|begin_of_text|>), so it is
tokenized with `add_special_tokens=False` (`encode_kwargs`); Alpaca text lets the tokenizer add its own (BOS),
exactly as Alpaca's train.py does.
"""

from __future__ import annotations

import re

from rlhf.errors import UserError

PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}

TEMPLATES = ("alpaca", "chat")
_PROBE = "\x00probe\x00"  # a reply no real conversation holds, to find where the template puts content


def format_prompt(instruction: str, input: str = "", template: str = "alpaca") -> str:
    """The Alpaca prompt for one example: `prompt_input` when there is an input, else `prompt_no_input`.
    (`chat` needs the tokenizer: use `render_prompt`.)"""
    if template != "alpaca":
        if template == "chat":
            raise ValueError("the chat template needs the tokenizer: use rlhf.templates.render_prompt")
        raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
    # One pass over the template's own fields, so braces or "{input}" inside user text stay as written
    # (what Alpaca's str.format_map does, minus its KeyError on stray braces).
    key = "prompt_input" if input else "prompt_no_input"
    fields = {"instruction": instruction, "input": input}
    return re.sub(r"\{(instruction|input)\}", lambda m: fields[m.group(1)], PROMPT_DICT[key])


def display_prompt(instruction: str, input: str = "") -> str:
    """The prompt as a person reads it (pairs files, the labeling app, reports): the instruction, then its input
    after a blank line. The model sees `render_prompt`'s text instead."""
    return f"{instruction}\n\n{input}" if input else instruction


def prompt_messages(row: dict) -> list[dict]:
    """The prompt of a row as chat messages: its `messages`, else one user turn with the instruction text."""
    if row.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    return [{"role": "user", "content": display_prompt(row["instruction"], row.get("input", "") or "")}]


def require_chat_template(tokenizer) -> None:
    """One clear error, naming the model dir, when `template: chat` meets a tokenizer without a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        where = getattr(tokenizer, "name_or_path", "") or "the model"
        raise UserError(
            "template 'chat' needs a tokenizer with a chat template and this one has none; use template: alpaca, "
            "or set tokenizer.chat_template and save it with the model",
            where,
        )


def render_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool) -> str:
    require_chat_template(tokenizer)
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def render_prompt(row: dict, template: str, tokenizer=None) -> str:
    """The text the model continues for this prompt row under `template`."""
    if template == "chat":
        return render_chat(tokenizer, prompt_messages(row), add_generation_prompt=True)
    return format_prompt(row["instruction"], row.get("input", "") or "", template)


def render_prompts(rows: list[dict], template: str, tokenizer=None) -> list[str]:
    return [render_prompt(r, template, tokenizer) for r in rows]


def end_of_turn(tokenizer, template: str) -> str:
    """The text that ends a reply: EOS for Alpaca (its `output + eos`), and for chat what the template writes after
    an assistant message's content (ChatML: `<|im_end|>`, Llama 3: `<|eot_id|>`), without trailing whitespace.
    A rollout that stops at this token and a training example that ends with it then agree."""
    if template != "chat":
        return tokenizer.eos_token
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
    text = render_chat(tokenizer, messages, add_generation_prompt=False)
    tail = text[text.rindex(_PROBE) + len(_PROBE) :].rstrip()
    return tail or tokenizer.eos_token


def end_of_turn_id(tokenizer, template: str) -> int:
    """The one token id that ends a reply under `template` (what rollouts and batched sampling stop at): EOS for
    Alpaca, the end-of-turn token for chat (ChatML `<|im_end|>`), or one clear error when it is not one token."""
    if template != "chat":
        return tokenizer.eos_token_id
    text = end_of_turn(tokenizer, template)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise UserError(
            f"the chat template ends a reply with {text!r}, {len(ids)} tokens; generation can only stop at one "
            "token (add it to the tokenizer as a special token)",
            getattr(tokenizer, "name_or_path", "") or "the model",
        )
    return ids[0]


def choose_template(recorded: str | None, given: str | None, path, where: str) -> str:
    """The template to use with a model: the one its manifest records (`recorded`; a `given` one must agree),
    else `given`, else alpaca (a model the kit did not write). `path`/`where` name the setting in errors."""
    if given is not None and given not in TEMPLATES:
        raise UserError(f"unknown template {given!r}; expected one of {', '.join(TEMPLATES)}", path, where)
    if recorded is not None:
        if given is not None and given != recorded:
            raise UserError(
                f"template {given!r}, but the model's manifest records template {recorded!r}", path, where
            )
        return recorded
    return given or "alpaca"


def stage_template(parent, given: str | None, path, where: str = "key 'template'") -> str:
    """`choose_template` for a stage's parent (a checkpoint.Stage, or an External: a model without a manifest)."""
    recorded = None if getattr(parent, "kind", None) == "external" else parent.template
    return choose_template(recorded, given, path, where)


def encode_kwargs(template: str) -> dict:
    """Tokenizer keyword arguments for text rendered with `template` (chat text holds its own special tokens)."""
    return {"add_special_tokens": False} if template == "chat" else {}


def check_template(template: str, tokenizer) -> None:
    """Fail early (before any training) when `template` cannot be used with this tokenizer."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
    if template == "chat":
        require_chat_template(tokenizer)
