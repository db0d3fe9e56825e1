"""A resumed run reports what the uninterrupted run reports: `train_loss`, the first logged `loss` after the resume
and TRL's per-step training metrics.

Why they differ without this (transformers 5 `Trainer`, TRL 1.12 `RewardTrainer`):
- `train_loss` is `_total_loss_scalar / (global_step - _initial_global_step)`: the mean loss of the steps *this
  process* trained. `train()` resets `_total_loss_scalar` to 0 and `_initial_global_step` to the checkpoint's step
  on resume, so a run resumed at step 6 of 18 reports the mean of steps 7..18 only (the 0.43 vs 0.74 of issue 20).
- Logged `loss` is the sum of the step losses since the last log (`_tr_loss`, on the device) over the steps since
  `_globalstep_last_logged`. Neither is saved in a checkpoint: when save_steps is not a multiple of logging_steps,
  the first log after a resume averages only the steps after the checkpoint.
- TRL's RewardTrainer collects accuracy / margin / rewards per step in `_metrics["train"]` and averages them at the
  next log; `_total_train_tokens` counts tokens since `train()` began. Both start empty on resume.

`ResumableTrainingMetrics` (a callback) saves those accumulators into the checkpoint's trainer_state.json, which
transformers writes last and atomically with the rest of the state (`ExportableState`), and puts them back when
training resumes, right after `train()` has reset them. The arithmetic afterwards is the uninterrupted run's, in the
same order, so on CPU the numbers come out identical, not merely close. Under DDP the unlogged partial loss is
rank 0's (each rank holds its own and only rank 0 saves): the first log after a resume may then differ slightly.

    result = train_reporting_whole_run(trainer, resume_from)   # instead of trainer.train(resume_from_checkpoint=...)
    metrics["train_loss"] = result.training_loss
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import TrainOutput

STATE_KEY = "ResumableTrainingMetrics"


def loss_accumulators(trainer) -> dict[str, Any]:
    """What a checkpoint must hold for the loss reports to continue exactly: the logged-loss sum so far, the
    unlogged partial sum and the step it started after, and TRL's per-step metric lists (JSON-able)."""
    state = {
        "total_loss_scalar": float(getattr(trainer, "_total_loss_scalar", 0.0)),
        "tr_loss": float(trainer._tr_loss.item()) if getattr(trainer, "_tr_loss", None) is not None else 0.0,
        "globalstep_last_logged": int(getattr(trainer, "_globalstep_last_logged", 0)),
    }
    metrics = getattr(trainer, "_metrics", None)
    if isinstance(metrics, dict) and "train" in metrics:
        state["trl_train_metrics"] = {k: [float(x) for x in v] for k, v in metrics["train"].items()}
    if hasattr(trainer, "_total_train_tokens"):
        state["trl_total_train_tokens"] = int(trainer._total_train_tokens)
    return state


def restore_loss_accumulators(trainer, saved: dict[str, Any]) -> None:
    """Put `loss_accumulators`' values back into a trainer whose `train()` has just reset them (on_train_begin)."""
    trainer._total_loss_scalar = float(saved["total_loss_scalar"])
    trainer._tr_loss.fill_(float(saved["tr_loss"]))  # in place: the training loop holds this tensor
    trainer._globalstep_last_logged = int(saved["globalstep_last_logged"])
    if "trl_train_metrics" in saved and isinstance(getattr(trainer, "_metrics", None), dict):
        train = trainer._metrics["train"]
        train.clear()
        for k, v in saved["trl_train_metrics"].items():
            train[k] = list(v)
    if "trl_total_train_tokens" in saved and hasattr(trainer, "_total_train_tokens"):
        trainer._total_train_tokens = int(saved["trl_total_train_tokens"])


def whole_run_train_loss(trainer) -> float:
    """The mean step loss over every step of the run, resumed or not: the uninterrupted run's formula (its
    `_initial_global_step` is 0). Valid once `train()` has returned (or inside its final on_log)."""
    return trainer._total_loss_scalar / max(trainer.state.global_step, 0.001)


class ResumableTrainingMetrics(TrainerCallback, ExportableState):
    """Saves the loss accumulators with every checkpoint and restores them on resume; rewrites the final
    `train_loss` log to the whole run's. Add it with `track_whole_run_metrics` (it needs the trainer)."""

    def __init__(self, trainer=None):
        self.trainer = trainer

    def state(self) -> dict:
        if self.trainer is None:  # rebuilt by transformers' restore_callback_states_from_checkpoint
            return {"args": {}, "attributes": {}}
        return {"args": {}, "attributes": {"saved": loss_accumulators(self.trainer)}}

    def on_train_begin(self, args, state, control, **kwargs):
        # A checkpoint from before this callback existed has no entry; _save_checkpoint needs the key to exist.
        saved = state.stateful_callbacks.get(STATE_KEY)
        state.stateful_callbacks[STATE_KEY] = self.state()
        data = saved.get("attributes", {}).get("saved") if isinstance(saved, dict) else None
        if state.global_step > 0 and data and getattr(self.trainer, "_tr_loss", None) is not None:
            restore_loss_accumulators(self.trainer, data)
        # else: a fresh run, or a checkpoint saved without this callback (its report covers the resumed part only)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "train_loss" in logs and self.trainer is not None:
            # The final log of train(): `logs` is the dict train() returns in its metrics; log_history holds a copy.
            logs["train_loss"] = whole_run_train_loss(self.trainer)
            if state.log_history and "train_loss" in state.log_history[-1]:
                state.log_history[-1]["train_loss"] = logs["train_loss"]


def track_whole_run_metrics(trainer) -> ResumableTrainingMetrics:
    """Attach the callback first, so every other callback (log.jsonl, printers) sees the corrected values."""
    existing = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ResumableTrainingMetrics)]
    if existing:
        return existing[0]
    cb = ResumableTrainingMetrics(trainer)
    trainer.callback_handler.callbacks.insert(0, cb)
    return cb


def train_reporting_whole_run(trainer, resume_from_checkpoint: str | None = None) -> TrainOutput:
    """`trainer.train(resume_from_checkpoint=...)` whose TrainOutput (training_loss, metrics['train_loss']) and logs
    report the whole run, as an uninterrupted run would. For transformers' Trainer and its subclasses (SFT, TRL's
    RewardTrainer); TRL's PPO loop keeps no loss accumulators (its metrics are per-update log rows)."""
    track_whole_run_metrics(trainer)
    out = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    loss = whole_run_train_loss(trainer)
    return TrainOutput(out.global_step, loss, {**(out.metrics or {}), "train_loss": loss})
