"""One stage run, start to finish: the mechanics every stage shares, so each `train.py` holds only its recipe.

    job = StageRun("sft", cfg)           # seed; refuse a finished output_dir before minutes of loading
    ... load data and models ...
    job.begin()                           # output dir ready, resume point resolved, log.jsonl started
    trainer = job.attach(Trainer(..., callbacks=job.callbacks()))
    result = job.train(trainer)           # continues from the resume point
    model = job.final_model(trainer)      # gathered when sharded (every rank); None on ranks other than 0
    if model is None:
        return None
    job.save(model, tokenizer)            # weights + tokenizer
    return job.finish(tokenizer, metrics=...)   # checkpoint-N dirs removed, then the manifest, last

Only rank 0 writes into the stage dir (rlhf/distributed.py); the manifest is written last, so a dir with one is a
finished stage (rlhf/checkpoint.py).
"""

from __future__ import annotations

import re
import resource
import sys
import time
from pathlib import Path

from transformers import set_seed

from rlhf import checkpoint
from rlhf.config import config_to_dict
from rlhf.distributed import final_model, gather_state_dict, is_main_process, main_print, world_size
from rlhf.hub import push_target, upload_stage
from rlhf.paths import check_stage_paths
from rlhf.resume_metrics import train_reporting_whole_run
from rlhf.resume_settings import (
    TRAINER_LENGTH_KEYS,
    TRAINER_SETTINGS,
    RecordSettings,
    check_checkpoint_settings,
    settings_of,
)
from rlhf.training import JsonlLogger, quiet_trainer, remove_checkpoints, resolve_resume, start_log


def apply_runtime_settings(cfg) -> None:
    """Where a stage starts: the process-wide settings of rlhf.runtime (tokenizer threads, TRL's notice; the OpenMP
    wait policy only if torch has not loaded yet, as under `rlhf` or `python -m STAGE`). A user's values win."""
    from rlhf.runtime import configure_process

    configure_process()


class PeakMemory:
    """Peak memory from now on: resident set size (Linux: /proc/self VmHWM, reset through clear_refs; elsewhere the
    process's lifetime peak, `scope` "process") and, with CUDA, the most GPU memory torch allocated. Several stages
    run in one process (`rlhf pipeline`): the reset makes each stage's peak its own."""

    def __init__(self):
        self.scope = "stage" if _reset_rss_peak() else "process"
        import torch

        # Only a CUDA context already made is reset: making one here would put every rank's on GPU 0 before
        # accelerate picks each rank's device. Before the first one, the peak counts from zero anyway.
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict:
        """{"rss_mib", "gpu_mib" (None when CUDA was not used), "scope"}: what the manifest records as
        `peak_memory`. The GPU figure is this process's device (rank 0's, in a multi-GPU run)."""
        import torch

        gpu = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            gpu = torch.cuda.max_memory_allocated() / 2**20
        return {"rss_mib": _rss_peak_mib(), "gpu_mib": gpu, "scope": self.scope}


def _reset_rss_peak() -> bool:
    try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0, own process)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_peak_mib() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024
    except (OSError, AttributeError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def warn_limited_checkpoints(kind: str, cfg) -> None:
    """keep_checkpoints keeps what the trainer's save_total_limit left: with a limit set, only the newest N. Said
    once at the start (stderr), because a run that meant to keep every checkpoint finds out only at the end."""
    limit = getattr(cfg, "save_total_limit", None)
    if cfg.keep_checkpoints and limit is not None and getattr(cfg, "save_strategy", "steps") != "no":
        main_print(
            f"{kind}: warning: keep_checkpoints keeps only the newest {limit} checkpoint-N dirs "
            f"(save_total_limit: {limit}); set save_total_limit: null to keep every one",
            file=sys.stderr,
        )


class StageRun:
    """The lifecycle of one stage run: prepare output -> trainer -> resume + log start -> train -> gather ->
    rank 0 only -> final model -> save -> remove checkpoints -> manifest last."""

    def __init__(self, kind: str, cfg, *, parents: list[checkpoint.Stage] = ()):
        self.kind, self.cfg, self.parents = kind, cfg, list(parents)
        # The settings that shape the run (TRAINER_SETTINGS and the config's RESUME_SETTINGS): recorded in each
        # checkpoint and checked when a run resumes from one (rlhf.resume_settings). PPO's config has none: its
        # checkpoints record their own (ppo/resumable.py).
        keys = getattr(cfg, "RESUME_SETTINGS", None)
        self.settings = (
            None if keys is None else settings_of(cfg, TRAINER_SETTINGS + keys, processes=world_size())
        )
        self.started = time.time()
        apply_runtime_settings(cfg)  # before torch loads (PeakMemory below imports it)
        self.memory = PeakMemory()  # model loading included
        set_seed(cfg.seed)
        # Inputs are never written; --overwrite replaces a stage of this kind only.
        check_stage_paths(kind, cfg)
        checkpoint.check_output_dir(cfg.output_dir, overwrite=cfg.overwrite)  # refuse before any loading
        # push_to_hub: checked now (refused in one line if it cannot happen), done by `finish` after the manifest.
        # Trainer's own push is turned off: it would upload before the model card and the manifest exist.
        self.push_to = push_target(cfg)
        cfg.push_to_hub = False
        self.out = Path(cfg.output_dir)
        warn_limited_checkpoints(kind, cfg)
        self._resume: tuple[str | None] | None = None  # resolved once: (checkpoint dir or None,)
        if self.settings is not None:
            self.resume_point()  # a checkpoint made with other settings: refused before any loading

    def resume_point(self, required: tuple[str, ...] = ()) -> str | None:
        """The checkpoint-N dir this run continues from (per the `resume` option), or None for a fresh start.
        Overwriting a finished stage always starts over (begin drops its checkpoints). `required`: files a
        checkpoint of this stage must hold besides trainer_state.json. Call early to check it before loading."""
        if self._resume is None:
            fresh = checkpoint.is_finished(self.out)
            self._resume = (None if fresh else resolve_resume(self.cfg.resume, self.out, required=required),)
            if self.settings is not None:
                check_checkpoint_settings(self._resume[0], self.settings, TRAINER_LENGTH_KEYS)
        return self._resume[0]

    def begin(self) -> Path:
        """Make output_dir the unfinished stage dir this run writes (after data and models loaded: nothing is
        touched for a run that fails on its inputs), and start log.jsonl (kept up to the resume point)."""
        resume_from = self.resume_point()
        self.out = checkpoint.begin(self.cfg.output_dir, overwrite=self.cfg.overwrite)
        if is_main_process():
            start_log(self.out, resume_from)
        self.cfg.disable_tqdm = self.cfg.quiet or self.cfg.disable_tqdm  # read when the trainer is built
        return self.out

    def callbacks(self, *extra) -> list:
        """Trainer callbacks every stage uses (metrics to log.jsonl; the run's settings into each checkpoint),
        then the stage's own."""
        record = [RecordSettings(self.settings)] if self.settings is not None else []
        return [JsonlLogger(self.out), *record, *extra]

    def attach(self, trainer):
        """The stage's trainer, with the run's output settings applied (`quiet`: no log printer either)."""
        if self.cfg.quiet:
            quiet_trainer(trainer)
        # report_to tensorboard: its events go under the stage dir. transformers 5 picks output_dir/runs only at
        # train begin, and a log before that (the SFT eval before training) would open ./runs in the working dir.
        for callback in trainer.callback_handler.callbacks:
            if type(callback).__name__ == "TensorBoardCallback" and callback.logging_dir is None:
                callback.logging_dir = str(self.out / "runs")
        return trainer

    def train(self, trainer, loss_accumulators: bool = True):
        """trainer.train(), continuing from the resume point. A transformers Trainer (SFT, RewardTrainer) keeps
        loss accumulators that a resume would reset: they are saved with each checkpoint so a resumed run reports
        the whole run's train_loss and logs (rlhf.resume_metrics). TRL's PPO loop has none
        (`loss_accumulators=False`): its metrics are per-update log rows, resumed with the run."""
        if loss_accumulators:
            return train_reporting_whole_run(trainer, self.resume_point())
        return trainer.train(resume_from_checkpoint=self.resume_point())

    def final_model(self, trainer, rebuild=None, merge_lora: bool = False):
        """The trained model as one plain module on rank 0, None on other ranks. A sharded model (ZeRO-3, FSDP)
        is gathered first, by every rank, into `rebuild()` (a fresh unsharded model of the same architecture)."""
        gathered = gather_state_dict(trainer)
        if not trainer.accelerator.is_main_process:
            return None
        return final_model(trainer, gathered, rebuild, merge_lora)

    def save(self, model, tokenizer=None, subdir: str = "") -> None:
        """Rank 0: weights (safetensors) and, if given, the tokenizer into the stage dir (or a subdir of it)."""
        target = self.out / subdir if subdir else self.out
        model.save_pretrained(target, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(target)

    def finish(
        self,
        tokenizer,
        *,
        metrics: dict,
        template: str,
        base_model: str | None,
        data_fingerprint: str | None = None,
        extra: dict | None = None,
    ) -> checkpoint.Stage:
        """Rank 0, after save: drop the checkpoint-N dirs (unless kept), write the model card and the manifest,
        last; then, with push_to_hub, upload the finished dir."""
        if not self.cfg.keep_checkpoints:
            remove_checkpoints(self.out)
        resumed = self.resume_point()
        config = {**config_to_dict(self.cfg), "push_to_hub": self.push_to is not None}
        stage = checkpoint.finish(
            self.out,
            self.kind,
            config=config,
            tokenizer=tokenizer,
            parents=self.parents,
            metrics=metrics,
            data_fingerprint=data_fingerprint,
            started_at=self.started,
            template=template,
            base_model=base_model,
            extra={
                **(extra or {}),
                # a checkpoint of this dir by name; one of another run (a run continued to more updates) by path
                "resumed_from": resumed
                and (
                    Path(resumed).name
                    if Path(resumed).resolve().parent == self.out.resolve()
                    else str(resumed)
                ),
                "peak_memory": self.memory.read(),
            },
            adapter=bool((extra or {}).get("adapter")),
            repo_id=self.push_to,
        )
        if self.push_to is not None:
            main_print(
                f"{self.kind}: uploaded {self.out} to {upload_stage(self.out, self.push_to, self.cfg)}"
            )
        return stage
