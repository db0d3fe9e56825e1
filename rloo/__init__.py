"""RLOO (REINFORCE leave-one-out) through TRL's RLOOTrainer: the SFT policy optimised against a trained reward model
with k samples per prompt, each baselined by the mean reward of the other k-1. `rloo.run(RLOOStageConfig(...))`."""

from rlhf.runtime import lazy_stage_exports

__all__ = ["RLOOStageConfig", "run"]
__getattr__ = lazy_stage_exports(
    __name__, "rloo.config", "RLOOStageConfig"
)  # `run` loads torch: only when first used
