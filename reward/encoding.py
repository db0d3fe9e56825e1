"""Preference pairs as the token ids RewardTrainer takes, and the stage's pair-length rule."""

from __future__ import annotations

from datasets import Dataset

from rlhf.evaluation.scoring import encode_example
from rlhf.templates import end_of_turn_id, render_prompt


def encode_pair(
    pair: dict, tokenizer, template: str, end_id: int | None = None
) -> tuple[list[int], list[int]]:
    """The chosen and rejected token ids of one preference pair: its prompt rendered with `template` (a
    conversation's `messages` under chat), the response, and the token that ends a reply (EOS, or the chat
    template's end of turn: where a PPO rollout stops)."""
    prompt = render_prompt(pair, template, tokenizer)
    if end_id is None:
        end_id = end_of_turn_id(tokenizer, template)
    return (
        encode_example(tokenizer, prompt, pair["chosen"], template, end_id),
        encode_example(tokenizer, prompt, pair["rejected"], template, end_id),
    )


def fits(chosen: list[int], rejected: list[int], max_length: int | None) -> bool:
    """The stage's length rule: a pair is kept only if both sides fit max_length."""
    return max_length is None or max(len(chosen), len(rejected)) <= max_length


def tokenize_pairs(
    pairs: list[dict], tokenizer, template: str, max_length: int | None
) -> tuple[Dataset, int]:
    """chosen_ids / rejected_ids as RewardTrainer takes them; pairs over max_length are dropped *and counted*
    (RewardTrainer would drop them silently)."""
    chosen, rejected, margins, dropped = [], [], [], 0
    end_id = end_of_turn_id(tokenizer, template) if pairs else None
    for p in pairs:
        c, r = encode_pair(p, tokenizer, template, end_id)
        if not fits(c, r, max_length):
            dropped += 1
            continue
        chosen.append(c)
        rejected.append(r)
        margins.append(p.get("margin"))
    columns = {"chosen_ids": chosen, "rejected_ids": rejected}
    if chosen and all(m is not None for m in margins):  # Llama-2-style margin loss when every pair has one
        columns["margin"] = [float(m) for m in margins]
    return Dataset.from_dict(columns), dropped
