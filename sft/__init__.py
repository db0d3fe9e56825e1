"""Stage 1: Alpaca-style supervised fine-tuning. `sft.run(SFTStageConfig(...))` trains one stage."""

# Resolved on first use, so `python -m sft` can set process-wide options (rlhf.runtime) before torch loads.
__all__ = ["SFTStageConfig", "run"]


def __getattr__(name: str):
    if name == "SFTStageConfig":
        from sft.config import SFTStageConfig

        return SFTStageConfig
    if name == "run":
        from sft.train import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
