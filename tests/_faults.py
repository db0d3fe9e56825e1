"""SIGKILL a stage mid-run and resume it, for tests/test_resume.py.

The tiny stage commands and the comparison of results are bench/_kill_resume.py's (bench/faults.py runs them
too). `start` runs a command as its own process group (as a user's shell job would be); `kill_when` SIGKILLs the
group at a chosen moment; rerunning the same command resumes (`resume: auto`, the default).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from _kill_resume import (  # noqa: E402,F401  (the tests import these from here)
    compared_metrics,
    manifest,
    max_weight_difference,
    stage_args,
    write_prefs,
)

# Files a checkpoint needs before the stage can resume from it (transformers writes trainer_state.json last).
RESUME_FILES = {"sft": (), "reward": (), "ppo": ("value_model.safetensors", "ppo_loop_state.safetensors",
                                                  "rng_state.pth", "optimizer.pt")}  # fmt: skip


def rlhf_argv(args: list) -> list[str]:
    return [sys.executable, "-m", "rlhf.cli", *map(str, args)]


def start(args: list, log: Path) -> subprocess.Popen:
    """Start `rlhf ARGS` in its own process group, output to `log` (a pipe nobody reads could block it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as f:
        return subprocess.Popen(
            rlhf_argv(args), cwd=REPO, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def run(args: list, log: Path, timeout: float = 600) -> int:
    proc = start(args, log)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_here(args: list) -> int:
    """Run `rlhf ARGS` in this process (no interpreter start: the uninterrupted reference runs)."""
    from rlhf.cli import main

    return main([str(a) for a in args])


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own, out of its group)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 600) -> bool:
    """SIGKILL the process, its group and everything it started once `ready()` holds. False if it ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not ready():
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        return False
    for pid in [*descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return True


def has_checkpoint(out: Path, stage: str) -> Callable[[], bool]:
    from rlhf.training import complete_checkpoints

    return lambda: bool(complete_checkpoints(out, RESUME_FILES[stage]))
