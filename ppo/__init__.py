"""Stage 3: PPO policy optimisation through TRL's PPOTrainer (trl.experimental.ppo, pinned trl==1.12.0).
`ppo.run(PPOStageConfig(...))` trains one stage."""

# Resolved on first use, so `python -m ppo` can set process-wide options (rlhf.runtime) before torch loads.
__all__ = ["PPOStageConfig", "run"]


def __getattr__(name: str):
    if name == "PPOStageConfig":
        from ppo.config import PPOStageConfig

        return PPOStageConfig
    if name == "run":
        from ppo.train import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
