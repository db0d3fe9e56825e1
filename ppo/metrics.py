"""The PPO stage's manifest metrics: the last logged rollout statistics and the run's throughput."""

from __future__ import annotations

from pathlib import Path

from rlhf.logs import read_log

LAST_LOGGED = (
    "objective/scores",
    "objective/kl",
    "objective/rlhf_reward",
    "objective/entropy",
    "loss/value_avg",
)


def run_metrics(out: Path, trainer, train_seconds: float, first_episode: int = 0) -> dict:
    """objective_* / loss_* of the last logged update, episodes (the whole run's) and episodes per second (of the
    episodes from `first_episode`, where a resumed run started, over the `train_seconds` they took)."""
    last = next((r for r in reversed(read_log(out)) if "objective/scores" in r), {})
    metrics = {k.replace("/", "_"): last[k] for k in LAST_LOGGED if k in last}
    episodes = int(last.get("episode", trainer.state.episode))
    metrics.update(
        episodes=episodes,
        train_seconds=train_seconds,
        episodes_per_second=(episodes - first_episode) / max(train_seconds, 1e-9),
    )
    return metrics
