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


def encode_kwargs(template: str) -> dict:
    """Tokenizer keyword arguments for text rendered with `template` (chat text holds its own special tokens)."""
    return {"add_special_tokens": False} if template == "chat" else {}


def check_template(template: str, tokenizer) -> None:
    """Fail early (before any training) when `template` cannot be used with this tokenizer."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
    if template == "chat":
        require_chat_template(tokenizer)
