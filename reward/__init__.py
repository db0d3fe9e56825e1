"""Stage 2: a reward model trained on preference pairs (chosen vs rejected). `reward.run(RewardStageConfig(...))`."""

# Resolved on first use, so `python -m reward` can set process-wide options (rlhf.runtime) before torch loads.
__all__ = ["RewardStageConfig", "run"]


def __getattr__(name: str):
    if name == "RewardStageConfig":
        from reward.config import RewardStageConfig

        return RewardStageConfig
    if name == "run":
        from reward.train import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
