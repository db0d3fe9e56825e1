"""The reward stage's score statistics, with which PPO normalises its rewards."""

from __future__ import annotations

import statistics


def reward_statistics(scores: list[float]) -> dict[str, float]:
    """reward_mean / reward_std of the trained model's scores (both responses of the held-out pairs)."""
    return {
        "reward_mean": statistics.fmean(scores),
        "reward_std": statistics.pstdev(scores) if len(scores) > 1 else 1.0,
    }
