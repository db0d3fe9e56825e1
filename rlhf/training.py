"""Trainer plumbing every stage shares: resume resolution, JSONL metric logs, checkpoint cleanup, LoRA config."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from rlhf.errors import UserError

LOG_FILE = "log.jsonl"


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N dirs that finished saving (trainer_state.json is written last), oldest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = []
    for d in out.glob("checkpoint-*"):
        suffix = d.name.split("-", 1)[1]
        if d.is_dir() and suffix.isdigit() and (d / "trainer_state.json").is_file():
            found.append((int(suffix), d))
    return [d for _, d in sorted(found)]


def resolve_resume(resume: str | None, output_dir: str | Path) -> str | None:
    """Map the `resume` option to what `Trainer.train(resume_from_checkpoint=...)` takes."""
    if resume in (None, "", "never", "false", "False"):
        return None
    if resume in ("auto", "true", "True"):
        ckpts = complete_checkpoints(output_dir)
        return str(ckpts[-1]) if ckpts else None
    if not (Path(resume) / "trainer_state.json").is_file():
        raise UserError("not a complete trainer checkpoint (no trainer_state.json)", resume, "key 'resume'")
    return resume


def remove_checkpoints(output_dir: str | Path) -> None:
    for d in Path(output_dir).glob("checkpoint-*"):
        shutil.rmtree(d, ignore_errors=True)


class JsonlLogger(TrainerCallback):
    """Append every Trainer log (loss, eval metrics, ...) as one JSON line to output_dir/log.jsonl."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LOG_FILE
        self.start = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time() - self.start, 3)}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        if "episode" in logs and row["time"] > 0:  # TRL's PPO logs `eps` as an integer; measure it ourselves
            row["episodes_per_second"] = logs["episode"] / row["time"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def lora_config(task_type: str | None, r: int, alpha: int, dropout: float, target_modules: str | list[str]):
    from peft import LoraConfig

    targets = target_modules
    if isinstance(targets, str) and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(
        task_type=task_type, r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets
    )


def quiet_trainer(trainer) -> None:
    """`--quiet`: with tqdm disabled the Trainer would print every log dict instead; drop that printer too
    (metrics still go to log.jsonl)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
