"""Stage 3: PPO policy optimisation through TRL's PPOTrainer (trl.experimental.ppo, pinned trl==1.12.0).
`ppo.run(PPOStageConfig(...))` trains one stage."""

import rlhf as _rlhf  # noqa: F401  (process-wide settings, e.g. OMP_WAIT_POLICY, before torch loads)
from ppo.config import PPOStageConfig
from ppo.train import run

__all__ = ["PPOStageConfig", "run"]
