"""Early stop once the policy has drifted too far from the reference (`kl_stop`)."""

from __future__ import annotations

from transformers import TrainerCallback


class KLStop(Exception):
    pass


class KLStopCallback(TrainerCallback):
    """TRL's PPO loop ignores control.should_training_stop, so stop by raising after the update that crossed the
    bound has been applied and logged."""

    def __init__(self, bound: float | None):
        self.bound = bound

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bound is not None and logs and logs.get("objective/kl", 0.0) > self.bound:
            raise KLStop(f"objective/kl {logs['objective/kl']:.3f} > kl_stop {self.bound}")
