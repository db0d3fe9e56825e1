"""PPO prompts as the token ids TRL's rollouts start from."""

from __future__ import annotations

from datasets import Dataset

from rlhf.templates import format_prompt


def tokenize_prompts(rows: list[dict], tokenizer, template: str, max_len: int) -> tuple[Dataset, int]:
    texts = [format_prompt(r["instruction"], r.get("input", ""), template) for r in rows]
    ids = tokenizer(texts)["input_ids"] if texts else []  # specials exactly as SFT's preprocess saw them
    kept = [x for x in ids if len(x) <= max_len]
    return Dataset.from_dict({"input_ids": kept}), len(ids) - len(kept)
