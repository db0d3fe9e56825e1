"""Prompt templates. Stanford Alpaca's two templates, used by every stage so the policy, the reward model and
the PPO rollouts all see the exact same prompt text."""

from __future__ import annotations

import re

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

TEMPLATES = ("alpaca",)


def format_prompt(instruction: str, input: str = "", template: str = "alpaca") -> str:
    """The Alpaca prompt for one example: `prompt_input` when there is an input, else `prompt_no_input`."""
    if template != "alpaca":
        raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
    # One pass over the template's own fields, so braces or "{input}" inside user text stay as written
    # (what Alpaca's str.format_map does, minus its KeyError on stray braces).
    key = "prompt_input" if input else "prompt_no_input"
    fields = {"instruction": instruction, "input": input}
    return re.sub(r"\{(instruction|input)\}", lambda m: fields[m.group(1)], PROMPT_DICT[key])


def display_prompt(instruction: str, input: str = "") -> str:
    """The prompt as a person reads it (pairs files, the labeling app, reports): the instruction, then its input
    after a blank line. The model sees `format_prompt`'s text instead."""
    return f"{instruction}\n\n{input}" if input else instruction
