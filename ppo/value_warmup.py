"""Value-model warm-up (`value_warmup`): the first PPO updates train only the value model, the policy frozen.

The value model starts as the reward model (Huang et al.'s N+ details), whose head was trained to score complete
responses only: on the prefixes PPO asks it about its numbers are arbitrary. Measured on the constraints
experiment's tuned start policy (180 sampled responses, the run's reward model): it predicts +0.87 on average just
before EOS and the reward model scores the finished response +0.21, so GAE gives the EOS token a negative
advantage (-0.59 after whitening, positive on 27% of finished responses) and PPO learns to stop finishing. A few
updates of value-only training let the value model learn the prefixes before the policy follows its advantages,
as verl's `critic_warmup` and OpenRLHF's `freezing_actor_steps` do.
"""

from __future__ import annotations

from transformers import TrainerCallback


class ValueWarmupCallback(TrainerCallback):
    """Hold the policy still until `updates` PPO updates are done. TRL 1.12's loop sums the policy and value losses
    into one backward pass and one optimizer over both models, and peft turns requires_grad back on for the adapter
    each time TRL disables it for the reference pass, so freezing parameters does not hold: an optimizer step
    pre-hook drops the policy's gradients instead. AdamW skips parameters without a gradient (their step count and
    moments stay at zero), so only the value model moves, and the policy's optimizer state starts fresh after the
    warm-up. Counts from the update counter on_train_begin sees: a run resumed after the warm-up trains at once."""

    def __init__(self, updates: int):
        self.updates = updates
        self.policy: list = []
        self.hook = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step < self.updates:
            self.policy = [p for p in model.policy.parameters() if p.requires_grad]
            self.hook = optimizer.register_step_pre_hook(self._drop_policy_grads)

    def _drop_policy_grads(self, optimizer, args, kwargs):
        for p in self.policy:
            p.grad = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.hook is not None and state.global_step >= self.updates:
            self.hook.remove()
            self.hook, self.policy = None, []
