"""Direct preference optimisation through TRL's DPOTrainer: the SFT policy trained on preference pairs directly,
no reward model. `dpo.run(DPOStageConfig(...))` trains one stage."""

from rlhf.runtime import lazy_stage_exports

__all__ = ["DPOStageConfig", "run"]
__getattr__ = lazy_stage_exports(
    __name__, "dpo.config", "DPOStageConfig"
)  # `run` loads torch: only when first used
