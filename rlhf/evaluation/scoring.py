"""Reward-model scoring, batched. Token layout matches the reward stage's training pairs and PPO's rollouts:
tokenize(prompt) + tokenize(response, no specials) + [EOS]."""

from __future__ import annotations

import torch

from rlhf.templates import format_prompt


def encode_example(tokenizer, prompt_text: str, response: str) -> list[int]:
    return (
        tokenizer(prompt_text)["input_ids"]
        + tokenizer(response, add_special_tokens=False)["input_ids"]
        + [tokenizer.eos_token_id]
    )


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


class RewardScorer:
    """Scores (prompt, response) pairs with a reward model; `batch_size=1` is the one-at-a-time baseline."""

    def __init__(self, model, tokenizer, template: str = "alpaca", batch_size: int = 64):
        self.model, self.tokenizer, self.template, self.batch_size = (
            model.eval(),
            tokenizer,
            template,
            batch_size,
        )

    @classmethod
    def from_stage(cls, path, batch_size: int = 64) -> RewardScorer:
        """The reward model at `path`: a finished reward stage, or any source `rlhf.models.locate_model` takes as
        a reward model (a ModelSource found earlier, too)."""
        from rlhf.models import load_reward_model

        loaded = load_reward_model(path, device="auto")
        return cls(loaded.model, loaded.tokenizer, loaded.template, batch_size)

    @torch.no_grad()
    def score(
        self, prompts: list[tuple[str, str]], responses: list[str], batch_size: int | None = None
    ) -> list[float]:
        bs = batch_size or self.batch_size
        encoded = [
            encode_example(self.tokenizer, format_prompt(ins, inp, self.template), resp)
            for (ins, inp), resp in zip(prompts, responses)
        ]
        # Sort by length so each batch pads little; scatter back to input order.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = [0.0] * len(encoded)
        device = next(self.model.parameters()).device
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            ids, mask = pad_right([encoded[i] for i in idx], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0]
            for i, v in zip(idx, logits.float().tolist()):
                out[i] = v
        return out

    def pairwise_accuracy(self, pairs: list[dict], batch_size: int | None = None) -> float:
        prompts = [(p["instruction"], p.get("input", "")) for p in pairs]
        chosen = self.score(prompts, [p["chosen"] for p in pairs], batch_size)
        rejected = self.score(prompts, [p["rejected"] for p in pairs], batch_size)
        return sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(pairs))
