"""Reward-model scoring, batched. Token layout matches the reward stage's training pairs and PPO's rollouts:
tokenize(rendered prompt) + tokenize(response, no specials) + [end of turn]: EOS under Alpaca, the chat template's
end-of-turn token under chat (the token a PPO rollout stops at)."""

from __future__ import annotations

import torch

from rlhf.templates import check_template, encode_kwargs, end_of_turn_id, render_prompt


def encode_example(
    tokenizer, prompt_text: str, response: str, template: str = "alpaca", end_id: int | None = None
) -> list[int]:
    """The ids a reward model scores: `prompt_text` (rendered with `template`), the response, and the token that
    ends a reply (`end_id`, found from the tokenizer when not given)."""
    end = end_id if end_id is not None else end_of_turn_id(tokenizer, template)
    return (
        tokenizer(prompt_text, **encode_kwargs(template))["input_ids"]
        + tokenizer(response, add_special_tokens=False)["input_ids"]
        + [end]
    )


def as_prompt_row(prompt) -> dict:
    """A prompt row from a row dict (with `messages` when it is a conversation) or an (instruction, input) pair."""
    if isinstance(prompt, dict):
        return prompt
    instruction, input_ = prompt
    return {"instruction": instruction, "input": input_}


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
        check_template(template, tokenizer)
        self.model, self.tokenizer, self.template, self.batch_size = (
            model.eval(),
            tokenizer,
            template,
            batch_size,
        )

    @classmethod
    def from_stage(cls, path, batch_size: int = 64, template: str | None = None) -> RewardScorer:
        """The reward model at `path`: a finished reward stage, or any source `rlhf.models.locate_model` takes as
        a reward model (a ModelSource found earlier, too); `template` for one without a manifest."""
        from rlhf.models import load_reward_model

        loaded = load_reward_model(path, device="auto", template=template)
        return cls(loaded.model, loaded.tokenizer, loaded.template, batch_size)

    @torch.no_grad()
    def score(
        self, prompts: list[dict | tuple[str, str]], responses: list[str], batch_size: int | None = None
    ) -> list[float]:
        """One score per (prompt, response): prompts are prompt rows (`rlhf.prompt_rows`; a conversation's
        `messages` are what the chat template renders) or (instruction, input) pairs."""
        bs = batch_size or self.batch_size
        end_id = end_of_turn_id(self.tokenizer, self.template)
        encoded = [
            encode_example(
                self.tokenizer,
                render_prompt(as_prompt_row(p), self.template, self.tokenizer),
                resp,
                self.template,
                end_id,
            )
            for p, resp in zip(prompts, responses)
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

    def pair_scores(
        self, pairs: list[dict], batch_size: int | None = None
    ) -> tuple[list[float], list[float]]:
        """The scores of each pair's `chosen` and `rejected` response, its prompt rendered from the pair's row (its
        `messages` when it is a conversation), both sides in one length-sorted pass."""
        prompts = [as_prompt_row(p) for p in pairs]
        scores = self.score(
            prompts * 2, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], batch_size
        )
        return scores[: len(pairs)], scores[len(pairs) :]

    def pairwise_wins(self, pairs: list[dict], batch_size: int | None = None) -> list[bool]:
        """Per pair: whether the reward model scores `chosen` above `rejected`."""
        chosen, rejected = self.pair_scores(pairs, batch_size)
        return [c > r for c, r in zip(chosen, rejected)]

    def pairwise_accuracy(self, pairs: list[dict], batch_size: int | None = None) -> float:
        return sum(self.pairwise_wins(pairs, batch_size)) / max(1, len(pairs))
