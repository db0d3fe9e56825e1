"""Stage 1: Alpaca-style supervised fine-tuning. `sft.run(SFTStageConfig(...))` trains one stage."""

import rlhf as _rlhf  # noqa: F401  (process-wide settings, e.g. OMP_WAIT_POLICY, before torch loads)
from sft.config import SFTStageConfig
from sft.train import run

__all__ = ["SFTStageConfig", "run"]
