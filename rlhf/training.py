"""Trainer plumbing every stage shares: resume resolution, the log.jsonl writer (and its trimming on resume),
checkpoint cleanup, LoRA config."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from rlhf.errors import UserError
from rlhf.io import atomic_write_text
from rlhf.logs import LOG_FILE, read_log, read_log_lines

TRAINER_STATE = "trainer_state.json"


def is_complete_checkpoint(path: str | Path, required: tuple[str, ...] = ()) -> bool:
    """Whether a checkpoint-N dir finished saving: transformers writes trainer_state.json last (not atomically,
    so it must also parse), and a stage may need files of its own (`required`, e.g. PPO's value model)."""
    path = Path(path)
    try:
        json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all((path / f).is_file() for f in required)


def complete_checkpoints(output_dir: str | Path, required: tuple[str, ...] = ()) -> list[Path]:
    """checkpoint-N dirs that finished saving, oldest first (a dir cut short by a kill is left out)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = []
    for d in out.glob("checkpoint-*"):
        suffix = d.name.split("-", 1)[1]
        if d.is_dir() and suffix.isdigit() and is_complete_checkpoint(d, required):
            found.append((int(suffix), d))
    return [d for _, d in sorted(found)]


def resolve_resume(resume: str | None, output_dir: str | Path, required: tuple[str, ...] = ()) -> str | None:
    """Map the `resume` option to what `Trainer.train(resume_from_checkpoint=...)` takes."""
    if resume in (None, "", "never", "false", "False"):
        return None
    if resume in ("auto", "true", "True"):
        ckpts = complete_checkpoints(output_dir, required)
        return str(ckpts[-1]) if ckpts else None
    if not is_complete_checkpoint(resume, required):
        needs = ", ".join((TRAINER_STATE, *required))
        raise UserError(f"not a complete trainer checkpoint (needs {needs})", resume, "key 'resume'")
    return resume


def resumed_progress(resume_from: str | None) -> dict[str, int]:
    """The update counter and episode count of the checkpoint a run resumes from (zeros for a fresh start): a
    resumed run's throughput is what this process trained over the time it took, not the whole run's count."""
    if resume_from is None:
        return {"global_step": 0, "episode": 0}
    state = json.loads((Path(resume_from) / TRAINER_STATE).read_text(encoding="utf-8"))
    return {"global_step": int(state.get("global_step") or 0), "episode": int(state.get("episode") or 0)}


def start_log(output_dir: str | Path, resume_from: str | None) -> None:
    """A fresh run starts with no log.jsonl; a resumed one keeps the rows up to its checkpoint's step (later rows
    belong to the part of the run that was lost, and are logged again)."""
    path = Path(output_dir) / LOG_FILE
    if not path.is_file():
        return
    if resume_from is None:
        path.unlink()
        return
    step = json.loads((Path(resume_from) / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"]
    keep = [
        line + "\n"
        for line, row in read_log_lines(output_dir)
        if isinstance(row.get("step"), int) and row["step"] <= step
    ]
    atomic_write_text(path, "".join(keep))


def logged_value(output_dir: str | Path, key: str, step: int) -> float | None:
    """The first value of `key` that log.jsonl recorded at `step` (None if it holds none)."""
    return next((row[key] for row in read_log(output_dir) if row.get("step") == step and key in row), None)


def remove_checkpoints(output_dir: str | Path) -> None:
    for d in Path(output_dir).glob("checkpoint-*"):
        shutil.rmtree(d, ignore_errors=True)


class JsonlLogger(TrainerCallback):
    """Append every Trainer log (loss, eval metrics, ...) as one JSON line to output_dir/log.jsonl."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LOG_FILE
        self.start = time.time()
        self.first_episode = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()
        # a resumed PPO run starts at its checkpoint's episode (ppo/resumable.py restores it before this runs)
        self.first_episode = getattr(state, "episode", 0) or 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time() - self.start, 3)}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        if "episode" in logs and row["time"] > 0:  # TRL's PPO logs `eps` as an integer; measure it ourselves
            row["episodes_per_second"] = (logs["episode"] - self.first_episode) / row["time"]
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


def lora_config_for(cfg, task_type: str | None):
    """The peft LoraConfig a stage config's LoRA keys (rlhf.config.LoraOptions) ask for, or None without use_lora
    (what the trainers' peft_config takes). task_type: peft's, e.g. CAUSAL_LM or SEQ_CLS."""
    if not cfg.use_lora:
        return None
    return lora_config(task_type, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)


def quiet_trainer(trainer) -> None:
    """`--quiet`: with tqdm disabled the Trainer would print every log dict instead; drop that printer too
    (metrics still go to log.jsonl)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
