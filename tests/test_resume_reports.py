"""Issue 20, point 5, end to end: SFT and reward SIGKILLed after a checkpoint and resumed report what an
uninterrupted run reports: every manifest metric and every log.jsonl row (timings aside) within 1e-6, the log
continuing without a repeated or lost row. logging_steps 4 against save_steps 6 puts the kill between two logs,
so the first loss logged after the resume covers steps from before it.

About 1.5 minutes on 2 cores (two stages, each run twice plus a killed run): -m slow.
"""

from __future__ import annotations

import pytest
from _faults import has_checkpoint, kill_when, manifest, run, run_here, stage_args, start, write_prefs

from rlhf.logs import read_log

TIMING = ("time", "runtime", "_per_second", "total_flos")


def untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not any(k == t or k.endswith(t) for t in TIMING)}


def log_rows(out) -> list[dict]:
    return [untimed(row) for row in read_log(out)]


@pytest.fixture(scope="module")
def chain(tiny_chain, demo_base, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume_reports")
    return {
        "base": demo_base,
        "sft_data": tiny_chain["root"] / "sft.json",
        "sft": tiny_chain["sft"],
        "prefs": write_prefs(root / "prefs.jsonl"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "reward"])
def test_killed_and_resumed_run_reports_the_uninterrupted_runs_metrics(stage, chain, tmp_path):
    args = lambda out: stage_args(stage, chain, out) + ["--logging_steps", "4"]  # noqa: E731
    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_here(args(ref)) == 0
    proc = start(args(out), tmp_path / "killed.log")
    assert kill_when(proc, has_checkpoint(out, stage)), "the stage finished before it could be killed"
    assert run(args(out), tmp_path / "killed.log") == 0, (tmp_path / "killed.log").read_text()
    assert manifest(out)["resumed_from"], "the second run did not resume"

    want, got = untimed(manifest(ref)["metrics"]), untimed(manifest(out)["metrics"])
    assert got.keys() == want.keys() and "train_loss" in want
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-6, rel=0), k
    want_log, got_log = log_rows(ref), log_rows(out)
    assert [r["step"] for r in got_log] == [r["step"] for r in want_log]  # none repeated, none lost
    for a, b in zip(want_log, got_log):
        assert a.keys() == b.keys(), a["step"]
        for k in a:
            assert b[k] == pytest.approx(a[k], abs=1e-6, rel=0), (a["step"], k)
