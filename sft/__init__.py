"""Stage 1: supervised fine-tuning, with the Alpaca template or the model's own chat template.
`sft.run(SFTStageConfig(...))` trains one stage."""

from rlhf.runtime import lazy_stage_exports

__all__ = ["SFTStageConfig", "run"]
__getattr__ = lazy_stage_exports(
    __name__, "sft.config", "SFTStageConfig"
)  # `run` loads torch: only when first used
