"""Stage 3: PPO policy optimisation through TRL's PPOTrainer (trl.experimental.ppo, pinned trl==1.12.0).
`ppo.run(PPOStageConfig(...))` trains one stage."""

from rlhf.runtime import lazy_stage_exports

__all__ = ["PPOStageConfig", "run"]
__getattr__ = lazy_stage_exports(
    __name__, "ppo.config", "PPOStageConfig"
)  # `run` loads torch: only when first used
