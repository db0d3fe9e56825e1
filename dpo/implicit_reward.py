"""DPO's implicit reward, r(x, y) = beta * (log pi(y | x) - log pi_ref(y | x)) (Rafailov et al., 2023): the reward
model a DPO policy defines against its reference. The stage reads it on its held-out pairs, which are the reward
stage's held-out pairs (the same split), so the two methods' rankings compare number for number."""

from __future__ import annotations

from rlhf.evaluation.scoring import as_prompt_row
from rlhf.generate import response_logprobs
from rlhf.templates import render_prompt


def implicit_rewards(
    policy, reference, tokenizer, template: str, pairs: list[dict], beta: float, batch_size: int = 8
) -> tuple[list[float], list[float]]:
    """The implicit reward of each pair's `chosen` and `rejected` response. Each prompt is rendered from the pair's
    row (a conversation with its history) and each response scored whole, with its end of turn, as DPO trained on
    it and as the reward stage scores it. Both sides in one pass per model (response_logprobs sorts by length)."""
    prompts = [render_prompt(as_prompt_row(p), template, tokenizer) for p in pairs] * 2
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]

    def logps(model) -> list[float]:
        return response_logprobs(
            model, tokenizer, prompts, responses, batch_size=batch_size, template=template
        )

    rewards = [beta * (a - b) for a, b in zip(logps(policy), logps(reference))]
    return rewards[: len(pairs)], rewards[len(pairs) :]
