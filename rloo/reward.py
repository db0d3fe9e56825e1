"""The reward RLOOTrainer optimises, computed the way the PPO stage computes it: the reward model scores the prompt's
token ids followed by the generated ids (EOS included when the response ended), normalised with the reward stage's
held-out mean/std, minus `missing_eos_penalty` for a response that never emitted EOS.

TRL's own reward-model path would decode the response and re-tokenize prompt + response text without special tokens,
which is not the sequence the reward stage trained on (rlhf.evaluation.scoring.encode_example)."""

from __future__ import annotations

import torch

from rlhf.evaluation.scoring import pad_right


class RewardModelScore:
    """A TRL reward function (called with prompts, completions and completion_ids) backed by a scalar-head model."""

    __name__ = "reward_model"  # the name TRL logs the reward under: rewards/reward_model/mean

    def __init__(self, model, tokenizer, *, mean: float = 0.0, std: float = 1.0, missing_eos_penalty=None,
                 batch_size: int = 64):  # fmt: skip
        self.model, self.tokenizer = model.eval(), tokenizer
        self.mean, self.std = float(mean), max(float(std), 1e-6)
        self.missing_eos_penalty, self.batch_size = missing_eos_penalty, batch_size

    @torch.no_grad()
    def __call__(
        self, prompts: list[str], completions: list[str], completion_ids: list[list[int]], **_
    ) -> list:
        eos = self.tokenizer.eos_token_id
        prompt_ids = self.tokenizer(prompts)["input_ids"]  # as RLOOTrainer tokenized them for generation
        rows = [p + list(c) for p, c in zip(prompt_ids, completion_ids)]
        device = next(self.model.parameters()).device
        scores: list[float] = []
        for i in range(0, len(rows), self.batch_size):
            ids, mask = pad_right(rows[i : i + self.batch_size], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0]
            scores += ((logits.float() - self.mean) / self.std).tolist()
        if self.missing_eos_penalty is not None:
            scores = [s - self.missing_eos_penalty * (eos not in c) for s, c in zip(scores, completion_ids)]
        return scores
