"""RLOO prompts: PPO's prompt sources (`rlhf.rollout_prompts.load_prompts`: a prompts file or a task's generator), as the
prompt text RLOOTrainer tokenizes, in the SFT policy's template."""

from __future__ import annotations

from datasets import Dataset

from rlhf.rollout_prompts import load_prompts
from rlhf.templates import format_prompt

__all__ = ["load_prompts", "prompt_rows"]


def prompt_rows(rows: list[dict], tokenizer, template: str, max_len: int) -> tuple[Dataset, int]:
    """{"prompt": text} rows; prompts over max_len tokens (as the tokenizer encodes them for generation, specials
    included, like PPO's tokenize_prompts) are dropped and counted."""
    texts = [format_prompt(r["instruction"], r.get("input", ""), template) for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]] if texts else []
    kept = [t for t, n in zip(texts, lengths) if n <= max_len]
    return Dataset.from_dict({"prompt": kept}), len(texts) - len(kept)
