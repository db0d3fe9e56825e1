"""Preference pairs as DPOTrainer's text rows: the prompt in the SFT policy's template, the two responses, and the
stage's pair-length rule."""

from __future__ import annotations

from datasets import Dataset

from rlhf.io import sha256_text
from rlhf.templates import format_prompt


def preference_rows(
    pairs: list[dict], tokenizer, template: str, max_length: int | None
) -> tuple[Dataset, int]:
    """{"prompt", "chosen", "rejected"} rows (DPOTrainer's standard format), with the prompt text exactly as SFT's
    preprocessing formats it: TRL then tokenizes prompt + response + EOS together, as SFT did. Pairs whose longer
    side exceeds max_length are dropped *and counted* (DPOTrainer's collator would cut them silently)."""
    prompts = [format_prompt(p["instruction"], p["input"], template) for p in pairs]
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    if not pairs:
        return Dataset.from_dict(rows), 0
    eos = tokenizer.eos_token
    lengths = {}
    for side in ("chosen", "rejected"):
        texts = [q + p[side] + eos for q, p in zip(prompts, pairs)]
        lengths[side] = [len(ids) for ids in tokenizer(texts, return_attention_mask=False)["input_ids"]]
    dropped = 0
    for i, (q, p) in enumerate(zip(prompts, pairs)):
        if max_length is not None and max(lengths["chosen"][i], lengths["rejected"][i]) > max_length:
            dropped += 1
            continue
        rows["prompt"].append(q)
        rows["chosen"].append(p["chosen"])
        rows["rejected"].append(p["rejected"])
    return Dataset.from_dict(rows), dropped


def fingerprint_pairs(pairs: list[dict]) -> str:
    """The same fingerprint the reward stage records for the pairs it trained on."""
    return sha256_text("".join(p["instruction"] + p["input"] + p["chosen"] + p["rejected"] for p in pairs))
