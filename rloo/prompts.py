"""RLOO prompts: the RL stages' prompt sources (`rlhf.rollout_prompts.load_prompts`: a prompts file or a task's
generator), in the form RLOOTrainer takes them for the SFT policy's template."""

from __future__ import annotations

from datasets import Dataset

from rlhf.rollout_prompts import encode_prompts, load_prompts
from rlhf.templates import prompt_messages, render_prompts

__all__ = ["load_prompts", "prompt_rows"]


def prompt_rows(rows: list[dict], tokenizer, template: str, max_len: int) -> tuple[Dataset, int]:
    """{"prompt": ..., "row": i} rows for RLOOTrainer (`row`: the prompt's index in `rows`, which a judge reward
    reads; RLOOTrainer passes a dataset's other columns to reward functions). Under alpaca the formatted prompt
    text, which TRL tokenizes with the tokenizer's special tokens (as SFT's preprocess did); under chat the prompt
    messages, which TRL renders with the chat template and its generation prompt and tokenizes without adding
    special tokens: the ids of `render_prompt`'s text, as PPO's rollouts and the reward stage see them (handing TRL
    the rendered text instead would add a BOS a chat template already writes). Prompts over max_len tokens, counted
    as a rollout sees them (`encode_prompts`), are dropped and counted."""
    texts = render_prompts(rows, template, tokenizer)
    lengths = [len(ids) for ids in encode_prompts(texts, tokenizer, template)]
    prompts = [prompt_messages(r) for r in rows] if template == "chat" else texts
    kept = [i for i, n in enumerate(lengths) if n <= max_len]
    return Dataset.from_dict({"prompt": [prompts[i] for i in kept], "row": kept}), len(prompts) - len(kept)
