"""The reward stage's score statistics, with which PPO normalises its rewards."""

from __future__ import annotations

import statistics

from rlhf.evaluation.scoring import RewardScorer


def reward_statistics(scorer: RewardScorer, pairs: list[dict]) -> dict[str, float]:
    """reward_mean / reward_std of the trained model over both responses of `pairs` (held-out ones)."""
    scores = scorer.score(
        [(p["instruction"], p["input"]) for p in pairs] * 2,
        [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
    )
    return {
        "reward_mean": statistics.fmean(scores),
        "reward_std": statistics.pstdev(scores) if len(scores) > 1 else 1.0,
    }
