"""Preference pairs as DPOTrainer's rows: the prompt in the SFT policy's template, the two responses, and the stage's
pair-length rule."""

from __future__ import annotations

from datasets import Dataset

from rlhf.io import sha256_text
from rlhf.templates import format_prompt, prompt_messages, render_chat


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def preference_rows(
    pairs: list[dict], tokenizer, template: str, max_length: int | None
) -> tuple[Dataset, int]:
    """DPOTrainer's rows, each pair's prompt as SFT saw it: `alpaca`: {"prompt", "chosen", "rejected"} text, which TRL
    tokenizes as prompt + response + EOS, as Alpaca's preprocessing did; `chat`: the prompt as messages and each
    response as one assistant message, which TRL renders with the tokenizer's chat template (the reply ends with
    the template's end of turn, as in SFT's chat examples). Pairs whose longer side exceeds max_length tokens are
    dropped *and counted* (DPOTrainer's collator would cut them silently)."""
    if template == "chat":
        prompts = [prompt_messages(p) for p in pairs]
        texts = {
            side: [render_chat(tokenizer, q + _assistant(p[side]), add_generation_prompt=False)
                   for q, p in zip(prompts, pairs)]
            for side in ("chosen", "rejected")
        }  # fmt: skip
        encode = {"add_special_tokens": False}  # the rendered text holds the template's special tokens
        response = _assistant
    else:
        prompts = [format_prompt(p["instruction"], p["input"], template) for p in pairs]
        texts = {
            side: [q + p[side] + tokenizer.eos_token for q, p in zip(prompts, pairs)]
            for side in ("chosen", "rejected")
        }
        encode = {}
        response = str
    rows: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    if not pairs:
        return Dataset.from_dict(rows), 0
    lengths = {side: [len(ids) for ids in tokenizer(t, return_attention_mask=False, **encode)["input_ids"]]
               for side, t in texts.items()}  # fmt: skip
    dropped = 0
    for i, (q, p) in enumerate(zip(prompts, pairs)):
        if max_length is not None and max(lengths["chosen"][i], lengths["rejected"][i]) > max_length:
            dropped += 1
            continue
        rows["prompt"].append(q)
        rows["chosen"].append(response(p["chosen"]))
        rows["rejected"].append(response(p["rejected"]))
    return Dataset.from_dict(rows), dropped


def fingerprint_pairs(pairs: list[dict]) -> str:
    """The same fingerprint the reward stage records for the pairs it trained on."""
    return sha256_text("".join(p["instruction"] + p["input"] + p["chosen"] + p["rejected"] for p in pairs))
