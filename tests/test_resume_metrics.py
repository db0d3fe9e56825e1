"""Issue 20, point 5, unit level: a Trainer resumed from a checkpoint reports what the uninterrupted run reports:
train_loss (transformers reports only the resumed steps' mean), the first `loss` logged after the resume when
save_steps is not a multiple of logging_steps, and TRL-style per-step metrics collected between logs.

A toy regression model trains in well under a second per run; the checkpoint an uninterrupted run saved at step
N is exactly what a run killed after step N leaves behind. tests/test_resume.py does the same with real kills.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from rlhf.resume_metrics import (
    STATE_KEY,
    ResumableTrainingMetrics,
    train_reporting_whole_run,
    whole_run_train_loss,
)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x, y):
        return {"loss": ((self.lin(x).squeeze(-1) - y) ** 2).mean()}


class Rows(torch.utils.data.Dataset):
    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class TrlStyleTrainer(Trainer):
    """Collects a per-step metric between logs and averages it at each log, as TRL's RewardTrainer does."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._total_train_tokens = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = model(**inputs)["loss"]
        if model.training:
            self._total_train_tokens += len(inputs["y"])
            self._metrics["train"]["abs_y"].append(inputs["y"].abs().mean().item())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return loss

    def log(self, logs, start_time=None):
        mode = "train" if self.model.training else "eval"
        logs.update({k: sum(v) / len(v) for k, v in self._metrics[mode].items()})
        super().log(logs, start_time)
        self._metrics[mode].clear()


def make_trainer(out, cls=Trainer, **overrides):
    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(out), max_steps=10, per_device_train_batch_size=4, learning_rate=0.05, logging_steps=4,
        save_steps=3, save_strategy="steps", report_to="none", disable_tqdm=True, seed=0, use_cpu=True,
        lr_scheduler_type="linear", **overrides,
    )  # fmt: skip
    return cls(model=Toy(), args=args, train_dataset=Rows())


def train_logs(trainer) -> list[dict]:
    timing = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")
    return [{k: v for k, v in row.items() if k not in timing} for row in trainer.state.log_history]


# resumed at 3 (before the first log), 6 (2 steps after the log at 4) and 9 (1 step after the log at 8)
@pytest.mark.parametrize(
    "cls,resume_step",
    [(Trainer, 3), (Trainer, 9), (TrlStyleTrainer, 6)],
    ids=["Trainer-3", "Trainer-9", "TRL-style-metrics-6"],
)
def test_resumed_run_reports_the_uninterrupted_runs_numbers(cls, resume_step, tmp_path):
    whole = make_trainer(tmp_path / "a", cls)
    ref = train_reporting_whole_run(whole)

    resumed = make_trainer(tmp_path / "b", cls)
    got = train_reporting_whole_run(resumed, str(tmp_path / "a" / f"checkpoint-{resume_step}"))
    assert got.training_loss == ref.training_loss  # exact: the same arithmetic in the same order
    assert got.metrics["train_loss"] == ref.metrics["train_loss"] == ref.training_loss
    # every row logged after the resume point (loss, grad_norm, learning_rate, TRL-style metrics, train_loss); the
    # resumed trainer's history also holds the checkpoint's earlier rows
    after = lambda t: [r for r in train_logs(t) if r["step"] > resume_step]  # noqa: E731
    assert after(resumed) == after(whole) and after(whole)


def test_without_the_callback_transformers_reports_only_the_resumed_part(tmp_path):
    """The defect this module fixes, pinned so a transformers upgrade that fixes it upstream is noticed."""
    whole = make_trainer(tmp_path / "a")
    ref = whole.train().training_loss
    resumed = make_trainer(tmp_path / "b")
    plain = resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-6")).training_loss
    assert abs(plain - ref) > 1e-4


def test_uninterrupted_value_is_transformers_own(tmp_path):
    plain = make_trainer(tmp_path / "a").train()
    ours = train_reporting_whole_run(make_trainer(tmp_path / "b"))
    assert ours.training_loss == plain.training_loss


def test_a_checkpoint_without_the_saved_state_still_resumes(tmp_path):
    """A checkpoint from before the callback existed: resumes as transformers would, without crashing at save."""
    make_trainer(tmp_path / "a").train()  # no callback: trainer_state.json has no entry for it
    resumed = make_trainer(tmp_path / "b")
    got = train_reporting_whole_run(resumed, str(tmp_path / "a" / "checkpoint-3"))
    assert got.global_step == 10 and got.training_loss == whole_run_train_loss(resumed)
    import json

    state = json.loads((tmp_path / "b" / "checkpoint-9" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"][STATE_KEY]["attributes"]["saved"]["globalstep_last_logged"] == 8


def test_callback_is_added_once_and_first(tmp_path):
    from rlhf.resume_metrics import track_whole_run_metrics

    t = make_trainer(tmp_path / "a")
    cb = track_whole_run_metrics(t)
    assert track_whole_run_metrics(t) is cb and t.callback_handler.callbacks[0] is cb
    assert isinstance(cb, ResumableTrainingMetrics)
