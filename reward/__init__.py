"""Stage 2: a reward model trained on preference pairs (chosen vs rejected). `reward.run(RewardStageConfig(...))`."""

import rlhf as _rlhf  # noqa: F401  (process-wide settings, e.g. OMP_WAIT_POLICY, before torch loads)
from reward.config import RewardStageConfig
from reward.train import run

__all__ = ["RewardStageConfig", "run"]
