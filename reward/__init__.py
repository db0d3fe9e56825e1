"""Stage 2: a reward model trained on preference pairs (chosen vs rejected). `reward.run(RewardStageConfig(...))`."""

from rlhf.runtime import lazy_stage_exports

__all__ = ["RewardStageConfig", "run"]
__getattr__ = lazy_stage_exports(
    __name__, "reward.config", "RewardStageConfig"
)  # `run` loads torch: only when first used
