"""SIGKILL a stage mid-run and resume it: what tests/test_resume.py and bench/faults.py share.

Every stage command here is the tiny, seconds-scale version of the demo stage, saving a checkpoint every few
steps. `start` runs it as its own process group (as a user's shell job would be); `kill_when` SIGKILLs the group
at a chosen moment; rerunning the same command resumes (`resume: auto`, the default).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What "the same result" means per stage: the final metrics a resumed run must reproduce (to 1e-4).
COMPARED = {
    "sft": ("eval_loss",),
    "reward": ("eval_accuracy", "reward_mean", "reward_std"),
    "ppo": ("objective_scores", "objective_kl", "objective_rlhf_reward", "loss_value_avg", "episodes"),
}
# Files a checkpoint needs before the stage can resume from it (transformers writes trainer_state.json last).
RESUME_FILES = {"sft": (), "reward": (), "ppo": ("value_model.safetensors", "ppo_loop_state.safetensors",
                                                  "rng_state.pth", "optimizer.pt")}  # fmt: skip


def write_prefs(path: Path, n: int = 200, seed: int = 7) -> Path:
    """Preference pairs on demo tasks: the bare correct answer over a wrong one (no sampling, so any size)."""
    from rlhf.io import atomic_write_jsonl
    from rlhf.tasks.demo import _wrong_answer, make_tasks

    rng = random.Random(seed)
    rows = [
        {
            "instruction": t.instruction,
            "input": t.input,
            "chosen": t.answer,
            "rejected": _wrong_answer(t, rng),
        }
        for t in make_tasks(n, seed, ("largest", "smallest"))
    ]
    atomic_write_jsonl(path, rows)
    return path


def stage_args(stage: str, chain: dict, out: Path) -> list[str]:
    """`rlhf <stage> ...` at tiny size with frequent checkpoints. chain: base, sft_data, sft, prefs, reward."""
    common = ["--output_dir", out, "--quiet", "true", "--seed", "0", "--keep_checkpoints", "false"]
    if stage == "sft":
        return ["sft", "--config", REPO / "configs/demo/sft.yaml", "--model_name_or_path", chain["base"],
                "--data_path", chain["sft_data"], "--max_steps", "18", "--save_steps", "6",
                "--eval_fraction", "0.1", *common]  # fmt: skip
    if stage == "reward":
        return ["reward", "--config", REPO / "configs/demo/reward.yaml", "--sft_path", chain["sft"],
                "--pairs_path", chain["prefs"], "--max_steps", "18", "--per_device_train_batch_size", "8",
                "--save_steps", "6", *common]  # fmt: skip
    if stage == "ppo":
        return ["ppo", "--config", REPO / "configs/demo/ppo.yaml", "--sft_path", chain["sft"],
                "--reward_path", chain["reward"], "--total_episodes", "96", "--per_device_train_batch_size", "16",
                "--local_rollout_forward_batch_size", "16", "--num_ppo_epochs", "1", "--demo_prompts", "40",
                "--num_eval_prompts", "8", "--num_sample_generations", "2", "--response_length", "12",
                "--kl_stop", "null", "--save_steps", "2", "--save_total_limit", "2", *common]  # fmt: skip
    raise ValueError(stage)


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


def manifest(out: Path) -> dict:
    return json.loads((Path(out) / "rlhf_stage.json").read_text())


def compared_metrics(out: Path, stage: str) -> dict:
    m = manifest(out)["metrics"]
    return {k: m[k] for k in COMPARED[stage] if k in m}


def max_weight_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between the saved weights of two stage dirs (same keys required)."""
    from safetensors.torch import load_file

    name = (
        "adapter_model.safetensors"
        if (Path(a) / "adapter_model.safetensors").is_file()
        else "model.safetensors"
    )
    wa, wb = load_file(Path(a) / name), load_file(Path(b) / name)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
