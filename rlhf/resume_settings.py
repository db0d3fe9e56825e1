"""The settings that shape a training run, recorded in each checkpoint and checked when a run resumes from one.

A checkpoint continues only the run that wrote it: resumed with another seed, learning rate or reward, a run would
silently become half one run and half another. Each stage names the config keys that shape its data stream and
updates; they are written into every `checkpoint-N` (`rlhf_settings.json`, by `RecordSettings`, or by PPO into
its own loop-state file) and compared before any model loads. A key a checkpoint does not record (an older one) is
taken at this run's word.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from rlhf.errors import UserError

SETTINGS_FILE = "rlhf_settings.json"

# Learning-rate schedules that do not depend on the run's length. Under one of them the first N steps of a longer
# run are those of an N-step run, so a finished run's checkpoint may be continued with a larger length (PPO's
# `total_episodes`, a Trainer's `max_steps` or `num_train_epochs`). Under linear or cosine decay the learning rate
# at every step depends on the total: continuing would not be the longer run, so it is refused.
LENGTH_FREE_SCHEDULES = ("constant", "constant_with_warmup")

# What shapes any transformers-Trainer stage's run (SFT, reward, DPO, RLOO); each stage adds its own keys.
TRAINER_SETTINGS = ("seed", "max_steps", "num_train_epochs", "per_device_train_batch_size",
                    "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "use_lora")  # fmt: skip
TRAINER_LENGTH_KEYS = ("max_steps", "num_train_epochs")


def settings_of(cfg, keys: tuple[str, ...], **extra) -> dict:
    """`cfg`'s values for `keys` (an enum, e.g. lr_scheduler_type, by its name), then `extra`; as JSON reads them
    back (a tuple as a list), so a recorded copy compares equal."""
    out = {}
    for key in keys:
        value = getattr(cfg, key, None)
        out[key] = getattr(value, "value", value)
    out.update(extra)
    return json.loads(json.dumps(out, default=str))


def check_settings(ckpt: str | Path, saved: dict, now: dict, length_keys: tuple[str, ...] = ()) -> None:
    """Refuse a checkpoint whose recorded settings differ from this run's (one error naming the first key);
    `length_keys` may grow under a length-free schedule: the checkpoint then continues a longer run."""
    for key, value in now.items():
        if key not in saved or saved[key] == value:
            continue
        numbers = all(isinstance(v, (int, float)) for v in (value, saved[key]))
        longer = key in length_keys and numbers and value > saved[key]
        if longer and now.get("lr_scheduler_type") in LENGTH_FREE_SCHEDULES:
            continue
        hint = ""
        if longer:
            schedules = " or ".join(LENGTH_FREE_SCHEDULES)
            hint = f" (a run continues to a larger {key} only under lr_scheduler_type {schedules})"
        raise UserError(
            f"checkpoint was written with {key} {saved[key]!r}, this run has {value!r}{hint}: rerun with the "
            "settings it was made with, or pass --resume never to start over",
            ckpt,
            "key 'resume'",
        )


def check_checkpoint_settings(ckpt: str | Path | None, now: dict, length_keys: tuple[str, ...] = ()) -> None:
    """`check_settings` against the `rlhf_settings.json` of checkpoint `ckpt` (none: a fresh start or an older
    checkpoint, nothing to check)."""
    if ckpt is None:
        return
    path = Path(ckpt) / SETTINGS_FILE
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"unreadable settings record ({e})", path) from None
    if not isinstance(saved, dict):
        raise UserError("expected a JSON object of settings", path)
    check_settings(ckpt, saved, now, length_keys)


class RecordSettings(TrainerCallback):
    """Write `settings` into each checkpoint as the Trainer saves it (main process; transformers calls `on_save`
    after the checkpoint dir is complete, so a crash in between leaves a checkpoint that is simply not checked)."""

    def __init__(self, settings: dict):
        self.settings = settings

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and ckpt.is_dir():
            tmp = ckpt / (SETTINGS_FILE + ".tmp")
            tmp.write_text(json.dumps(self.settings, indent=1), encoding="utf-8")
            tmp.replace(ckpt / SETTINGS_FILE)
