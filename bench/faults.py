"""Fault injection: SIGKILL each stage (SFT, reward, PPO) at 5 random moments, rerun the same command, and check
that every resumed run ends with the final metrics of an uninterrupted run with the same seed (to 1e-4) and the
same weights. Goal: 15/15.

The stages run at the tiny sizes of tests/test_resume.py (bench/_kill_resume.py), saving a checkpoint every few steps.
Each run is a child process forked from this one after the stage modules are imported, so that 30-odd runs do
not each pay an interpreter start (about 7 s on 2 cores); SIGKILL ends a forked child exactly as it ends any
process. The kill moment is drawn uniformly over the part of the uninterrupted run (measured first, the same way)
that writes: from the moment its output dir appears (models loaded, training about to start) to its end. Some
kills land before the first checkpoint (the rerun starts over), most after one; a run that happens to finish
before its kill lands is compared as it is, and counted as not killed.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from _common import parser, report

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one thread, as in the tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from _kill_resume import (  # noqa: E402  (the stage commands and comparisons tests/test_resume.py uses too)
    compared_metrics,
    manifest,
    max_weight_difference,
    stage_args,
    write_prefs,
)

STAGES = ("sft", "reward", "ppo")
TOLERANCE = 1e-4


def fork_rlhf(args: list, log: Path) -> int:
    """Start `rlhf ARGS` in a forked child (output appended to `log`); returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: run the command, never return into the parent's code
        rc = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            from rlhf.cli import main

            rc = main([str(a) for a in args])
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
    return pid


def wait(
    pid: int, kill_after: float | None = None, watch: Path | None = None
) -> tuple[int | None, float, float]:
    """Wait for the child; SIGKILL it `kill_after` seconds in. Returns (exit code, or None if killed; seconds;
    seconds until the `watch` dir appeared, i.e. the stage had loaded everything and began writing)."""
    t0, appeared = time.monotonic(), float("nan")
    while True:
        now = time.monotonic() - t0
        if watch is not None and appeared != appeared and watch.exists():
            appeared = now
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), now, appeared
        if kill_after is not None and now >= kill_after:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, now, appeared
        time.sleep(0.005)


def run(args: list, log: Path, watch: Path | None = None) -> tuple[float, float]:
    rc, seconds, appeared = wait(fork_rlhf(args, log), watch=watch)
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"faults: rlhf {' '.join(map(str, args))} exited {rc}:\n{tail}")
    return seconds, appeared


def build_chain(root: Path, log: Path) -> dict:
    """The tiny SFT -> reward chain the stages start from (as tests/conftest.py's tiny_chain builds it)."""
    from rlhf.io import atomic_write_json
    from rlhf.tasks.demo import make_sft_rows

    atomic_write_json(root / "sft.json", make_sft_rows(600, seed=0, kinds=("largest", "smallest")))
    run(["demo-model", "--out", root / "base", "--seed", "0"], log)
    chain = {"base": root / "base", "sft_data": root / "sft.json", "prefs": write_prefs(root / "prefs.jsonl")}
    run(stage_args("sft", chain, root / "sft") + ["--max_steps", "40"], log)
    chain["sft"] = root / "sft"
    run(stage_args("reward", chain, root / "reward"), log)
    chain["reward"] = root / "reward"
    return chain


def matches(stage: str, ref: Path, out: Path) -> tuple[bool, float]:
    a, b = compared_metrics(ref, stage), compared_metrics(out, stage)
    metric_gap = (
        max((abs(a[k] - b[k]) for k in a), default=float("inf")) if a.keys() == b.keys() else float("inf")
    )
    return metric_gap <= TOLERANCE and max_weight_difference(ref, out) <= 1e-6, metric_gap


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--trials", type=int, default=5, help="kills per stage")
    p.add_argument("--seed", type=int, default=0, help="draws the kill moments")
    a = p.parse_args()
    import ppo.train  # noqa: F401  (imported once here, so every forked run starts warm)
    import reward.train  # noqa: F401
    import sft.train  # noqa: F401

    rng = random.Random(a.seed)
    figures, details = [], []
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = tmp / "runs.log"
        chain = build_chain(tmp / "chain", log)
        total_ok = 0
        for stage in STAGES:
            ref = tmp / stage / "uninterrupted"
            ref_seconds, began = run(stage_args(stage, chain, ref), log, watch=ref)
            ok = killed = 0
            overheads = []
            for trial in range(a.trials):
                out = tmp / stage / f"trial{trial}"
                at = rng.uniform(began, ref_seconds)  # anywhere in the part of the run that writes
                rc, _, _ = wait(fork_rlhf(stage_args(stage, chain, out), log), kill_after=at)
                finished_anyway = (out / "rlhf_stage.json").exists()  # it was faster this time
                killed += not finished_anyway
                resumed_seconds = 0.0 if finished_anyway else run(stage_args(stage, chain, out), log)[0]
                good, gap = matches(stage, ref, out)
                ok += good
                overheads.append((at + resumed_seconds) / ref_seconds)
                resumed_from = (
                    manifest(out)["resumed_from"] or "the start (killed before the first checkpoint)"
                )
                what = "finished before the kill" if finished_anyway else f"resumed from {resumed_from}"
                details.append(
                    f"{stage} trial {trial}: killed at {at:.1f} s of {ref_seconds:.1f} s (writing from "
                    f"{began:.1f} s), {what}, largest metric difference {gap:.2g}: {'match' if good else 'MISMATCH'}"
                )
                print(details[-1], flush=True)
            total_ok += ok
            figures.append(
                {"figure": f"{stage}: resumed runs matching the uninterrupted one", "ours": ok,
                 "baseline": a.trials, "unit": "runs", "ratio": ok / a.trials, "goal": f"{a.trials}/{a.trials}"}
            )  # fmt: skip
            figures.append(
                {"figure": f"  {stage}: killed before finishing", "ours": killed, "baseline": a.trials,
                 "unit": "runs", "ratio": killed / a.trials, "goal": "most"}
            )  # fmt: skip
            figures.append(
                {"figure": f"  {stage}: wall time killed + resumed vs uninterrupted",
                 "ours": sum(overheads) / len(overheads), "baseline": 1.0, "unit": "x",
                 "ratio": sum(overheads) / len(overheads), "goal": "1 + share redone"}
            )  # fmt: skip
        n = a.trials * len(STAGES)
        figures.insert(
            0,
            {"figure": "resumed runs matching (all stages)", "ours": total_ok, "baseline": n, "unit": "runs",
             "ratio": total_ok / n, "goal": f"{n}/{n}"},
        )  # fmt: skip
    print(f"faults: {time.time() - t_start:.0f} s")
    report("faults (SIGKILL + resume)", figures, a.json)
    if total_ok != n:
        sys.exit(1)


if __name__ == "__main__":
    main()
