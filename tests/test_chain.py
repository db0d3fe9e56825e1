"""The chain refuses what it cannot trust, each time with one line naming the path and the reason: a parent of the
wrong kind, an unfinished one, a manifest of an unknown schema version (or not a manifest at all), a missing
weight file, a reward model whose tokenizer differs from the policy's. And a run dir that was copied or moved
still works: parents are found relative to the manifest.

Commands run through `rlhf.cli.main` in this process (the refusals come before any model loads).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from rlhf import checkpoint

CONFIGS = REPO / "configs" / "demo"


@pytest.fixture(scope="module")
def run(tiny_chain, tmp_path_factory) -> Path:
    """A copy of the tiny chain's sft and reward dirs, to corrupt copies of."""
    root = tmp_path_factory.mktemp("chain") / "run"
    for name in ("sft", "reward"):
        shutil.copytree(tiny_chain[name], root / name)
    shutil.copy2(tiny_chain["prefs"], root / "prefs.jsonl")
    return root


def rlhf(argv, capsys) -> tuple[int, list[str]]:
    from rlhf.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.splitlines()


def reward_on(sft: Path, run: Path, out: Path) -> list:
    return ["reward", "--config", CONFIGS / "reward.yaml", "--sft_path", sft, "--pairs_path", run / "prefs.jsonl",
            "--output_dir", out]  # fmt: skip


def ppo_on(sft: Path, reward: Path, out: Path, *extra) -> list:
    return ["ppo", "--config", CONFIGS / "ppo.yaml", "--sft_path", sft, "--reward_path", reward,
            "--output_dir", out, *extra]  # fmt: skip


def corrupt(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    change(dst)
    return dst


def edit_manifest(**fields):
    def change(d: Path):
        m = json.loads((d / checkpoint.MANIFEST).read_text())
        m.update(fields)
        (d / checkpoint.MANIFEST).write_text(json.dumps(m))

    return change


def write_manifest(text: str):
    return lambda d: (d / checkpoint.MANIFEST).write_text(text)


# case -> (how the sft dir is damaged, what the error line says after "error: ")
SFT_PARENT = {
    "unfinished": (lambda d: (d / checkpoint.MANIFEST).unlink(), "{d}: unfinished run: no rlhf_stage.json"),
    "unknown_schema_version": (edit_manifest(schema_version=99),
                               "{d}/rlhf_stage.json: unknown manifest schema version 99 (this kit reads version 1)"),
    "manifest_not_json": (write_manifest('{"schema_version": 1, "stage": "sft"'),
                          "{d}/rlhf_stage.json: manifest is not valid JSON"),
    "manifest_not_an_object": (write_manifest("[1, 2]"), "{d}/rlhf_stage.json: manifest is not a JSON object"),
    "unknown_stage_kind": (edit_manifest(stage="kto"), "{d}/rlhf_stage.json: unknown stage kind 'kto'"),
    "missing_weight_file": (lambda d: (d / "model.safetensors").unlink(),
                            "{d}: missing weight file (expected one of model.safetensors"),
    "not_a_directory": (lambda d: (shutil.rmtree(d), d.write_text("not a dir")), "{d}: checkpoint is not a directory"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SFT_PARENT))
def test_reward_refuses_a_bad_sft_parent_with_one_line(case, run, tmp_path, capsys):
    change, expected = SFT_PARENT[case]
    bad = corrupt(run / "sft", tmp_path / "sft", change)
    out = tmp_path / "reward"
    rc, lines = rlhf(reward_on(bad, run, out), capsys)
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: " + expected.format(d=bad)), lines[0]
    assert not out.exists()


def test_wrong_stage_kind_is_refused(run, tmp_path, capsys):
    rc, lines = rlhf(ppo_on(run / "reward", run / "reward", tmp_path / "ppo"), capsys)
    assert (rc, lines) == (
        2,
        [f"error: {run / 'reward'}: expected a finished sft stage, found a reward stage"],
    )
    rc, lines = rlhf(ppo_on(run / "sft", run / "sft", tmp_path / "ppo"), capsys)
    assert (rc, lines) == (2, [f"error: {run / 'sft'}: expected a finished reward stage, found a sft stage"])
    assert not (tmp_path / "ppo").exists()


def test_missing_parent_is_refused(run, tmp_path, capsys):
    rc, lines = rlhf(ppo_on(tmp_path / "nope", run / "reward", tmp_path / "ppo"), capsys)
    assert (rc, lines) == (2, [f"error: {tmp_path / 'nope'}: checkpoint does not exist"])


def test_reward_model_with_another_tokenizer_is_refused(run, tmp_path, capsys):
    """A reward stage not trained on this SFT dir, with a different tokenizer fingerprint (here: its manifest says
    so; test_ppo.py trains a real one on another tokenizer)."""
    m = json.loads((run / "reward" / checkpoint.MANIFEST).read_text())
    parents = [{**p, "manifest_sha256": "0" * 64} for p in m["parents"]]
    other = corrupt(
        run / "reward", tmp_path / "reward", edit_manifest(tokenizer_fingerprint="f" * 64, parents=parents)
    )
    rc, lines = rlhf(ppo_on(run / "sft", other, tmp_path / "ppo"), capsys)
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(
        f"error: {other / 'rlhf_stage.json'}: tokenizer fingerprint differs from {run / 'sft' / 'rlhf_stage.json'}"
    )
    assert not (tmp_path / "ppo").exists()


def test_unfinished_parent_of_a_parent_is_refused_by_inspect(run, tmp_path, capsys):
    shutil.copytree(run / "sft", tmp_path / "sft")
    shutil.copytree(run / "reward", tmp_path / "reward")
    (tmp_path / "sft" / checkpoint.MANIFEST).unlink()
    rc, lines = rlhf(["inspect", tmp_path / "reward"], capsys)
    assert (
        rc == 2
        and len(lines) == 1
        and lines[0].startswith(f"error: {tmp_path / 'reward' / '..' / 'sft'}: unfinished")
    )


@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_moved_or_copied_run_dir_still_works(how, run, tmp_path, capsys):
    """Parents resolve relative to the manifest: after a move (old place gone) or a copy (old place still there),
    the chain is the new dir's own, and PPO runs on it."""
    first = tmp_path / "first"
    for name in ("sft", "reward"):
        shutil.copytree(run / name, first / name)
    second = tmp_path / "second"
    shutil.move(first, second) if how == "moved" else shutil.copytree(first, second)

    reward = checkpoint.require(second / "reward", kind="reward")
    assert [p.resolve() for p in reward.parent_paths()] == [(second / "sft").resolve()]
    rc, lines = rlhf(["inspect", second / "reward"], capsys)
    assert rc == 0, lines
    out = second / "ppo"
    tiny = ["--total_episodes", "16", "--per_device_train_batch_size", "16", "--local_rollout_forward_batch_size", "16",
            "--num_ppo_epochs", "1", "--demo_prompts", "16", "--num_eval_prompts", "0", "--response_length", "8",
            "--quiet", "true", "--keep_checkpoints", "false"]  # fmt: skip
    rc, lines = rlhf(ppo_on(second / "sft", second / "reward", out, *tiny), capsys)
    assert rc == 0, lines
    ppo = checkpoint.require(out, kind="ppo")
    assert {p.resolve() for p in ppo.parent_paths()} == {
        (second / "sft").resolve(),
        (second / "reward").resolve(),
    }
    assert not any(Path(ref["path"]).is_absolute() for ref in ppo.manifest["parents"])
