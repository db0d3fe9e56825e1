"""Issue 20, point 1: inputs are never written. Every command resolves its inputs and outputs first (symlinks and
`..` included) and refuses, in one line, an output that is, contains or lies inside an input, with or without
--overwrite; --overwrite replaces a previous output of the same stage kind only.

The two destructive cases the issue found run as a user would (through rlhf.cli.main) and the input dir is hashed
file by file before and after; the path rules themselves are unit-tested on rlhf.paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from rlhf.errors import UserError
from rlhf.paths import refuse_other_kind, refuse_overlap

CONFIGS = REPO / "configs" / "demo"


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (relative path -> sha256), symlinks followed: equal digests, byte-identical trees."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def rlhf(argv, capsys) -> tuple[int, list[str]]:
    from rlhf.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.splitlines()


@pytest.fixture()
def own_sft(tiny_chain, tmp_path) -> Path:
    """A private copy of the finished SFT stage (the session's one is shared with other tests)."""
    d = tmp_path / "sft"
    shutil.copytree(tiny_chain["sft"], d)
    return d


@pytest.mark.parametrize("overwrite", ["true", "false"])
def test_reward_into_its_own_sft_dir_is_refused_and_the_sft_run_survives(
    overwrite, own_sft, tiny_chain, capsys
):
    before = tree_digest(own_sft)
    argv = ["reward", "--config", CONFIGS / "reward.yaml", "--sft_path", own_sft, "--pairs_path", tiny_chain["prefs"],
            "--output_dir", own_sft, "--overwrite", overwrite, "--quiet", "true"]  # fmt: skip
    rc, lines = rlhf(argv, capsys)
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {own_sft}:key 'output_dir': is the same path as sft_path"), lines[0]
    assert tree_digest(own_sft) == before


def test_sft_into_its_base_model_dir_is_refused_and_the_model_survives(
    demo_base, tiny_chain, tmp_path, capsys
):
    base = tmp_path / "base"
    shutil.copytree(demo_base, base)
    before = tree_digest(base)
    data = tiny_chain["root"] / "sft.json"
    for out, overwrite in ((base, "false"), (base, "true"), (tmp_path / "x" / ".." / "base", "true")):
        argv = ["sft", "--config", CONFIGS / "sft.yaml", "--model_name_or_path", base, "--data_path", data,
                "--output_dir", out, "--overwrite", overwrite]  # fmt: skip
        rc, lines = rlhf(argv, capsys)
        assert rc == 2 and len(lines) == 1, lines
        assert "key 'output_dir': is the same path as model_name_or_path" in lines[0], lines[0]
    assert tree_digest(base) == before


def test_a_stage_never_replaces_a_model_it_did_not_write(demo_base, tiny_chain, tmp_path, capsys):
    """output_dir is not an input here, just another model dir (a base model, a converted GGUF): --overwrite
    replaces previous runs of the stage, nothing else."""
    other = tmp_path / "other-model"
    shutil.copytree(demo_base, other)
    before = tree_digest(other)
    argv = ["sft", "--config", CONFIGS / "sft.yaml", "--model_name_or_path", demo_base, "--data_path",
            tiny_chain["root"] / "sft.json", "--output_dir", other, "--overwrite", "true"]  # fmt: skip
    rc, lines = rlhf(argv, capsys)
    assert rc == 2 and lines == [
        f"error: {other}:key 'output_dir': holds a model that no sft run wrote (no rlhf_stage.json, no "
        "log.jsonl); a stage never replaces it: choose another output_dir"
    ]
    assert tree_digest(other) == before


def test_overwrite_replaces_only_the_same_stage_kind(own_sft, tiny_chain, capsys):
    before = tree_digest(own_sft)
    argv = ["reward", "--config", CONFIGS / "reward.yaml", "--sft_path", tiny_chain["sft"], "--pairs_path",
            tiny_chain["prefs"], "--output_dir", own_sft, "--overwrite", "true"]  # fmt: skip
    rc, lines = rlhf(argv, capsys)
    assert rc == 2 and lines == [
        f"error: {own_sft}:key 'output_dir': holds a finished sft stage; --overwrite only replaces a reward "
        "stage: choose another output_dir"
    ]
    assert tree_digest(own_sft) == before


# --- the path rules -------------------------------------------------------------------------------------------


@pytest.fixture()
def layout(tmp_path) -> dict[str, Path]:
    (tmp_path / "runs" / "sft").mkdir(parents=True)
    (tmp_path / "runs" / "sft" / "model.safetensors").write_bytes(b"w")
    (tmp_path / "data.json").write_text("[]")
    os.symlink(tmp_path / "runs" / "sft", tmp_path / "link")
    return {"root": tmp_path, "sft": tmp_path / "runs" / "sft", "data": tmp_path / "data.json"}


@pytest.mark.parametrize(
    "out,relation",
    [
        ("runs/sft", "is the same path as --in"),
        ("link", "is the same path as --in"),  # a symlink to the input
        ("runs/other/../sft", "is the same path as --in"),
        ("runs/./sft/", "is the same path as --in"),
        ("runs", "contains the input --in"),
        (".", "contains the input --in"),
        ("runs/sft/sub/out", "lies inside the input --in"),
        ("link/out", "lies inside the input --in"),
    ],
)
def test_an_output_overlapping_an_input_is_refused_however_it_is_spelled(out, relation, layout, monkeypatch):
    monkeypatch.chdir(layout["root"])
    with pytest.raises(UserError) as e:
        refuse_overlap({"--in": "runs/sft"}, {"--out": out})
    assert e.value.line() == (
        f"error: {out}:--out: {relation} (runs/sft); an output must be outside every input, with or "
        "without --overwrite: choose another --out"
    )


def test_separate_paths_pass_and_missing_inputs_are_skipped(layout, monkeypatch):
    monkeypatch.chdir(layout["root"])
    refuse_overlap({"--in": "runs/sft", "--data": "data.json", "--hub": "facebook/opt-125m", "--none": None},
                   {"--out": "runs/reward", "--log": "runs/reward.log", "--unset": None})  # fmt: skip
    refuse_overlap({"CHECKPOINTS": ["runs/sft", "data.json"]}, {"--out": "report"})
    with pytest.raises(UserError, match="is the same path as CHECKPOINTS"):
        refuse_overlap({"CHECKPOINTS": ["runs/sft", "data.json"]}, {"--out": "data.json"})
    with pytest.raises(UserError, match="^error: data.json:key 'output_dir': is the same path as data_path"):
        refuse_overlap({"data_path": "data.json"}, {"output_dir": "data.json"})


def _fake_stage(d: Path, kind: str) -> Path:
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"w")
    (d / "rlhf_stage.json").write_text(json.dumps({"schema_version": 1, "stage": kind}))
    return d


def test_refuse_other_kind(tmp_path):
    refuse_other_kind(tmp_path / "missing", "sft")
    refuse_other_kind(_fake_stage(tmp_path / "a", "sft"), "sft")  # the same kind: --overwrite may replace it
    with pytest.raises(UserError, match="holds a finished sft stage; --overwrite only replaces a ppo stage"):
        refuse_other_kind(tmp_path / "a", "ppo")
    with pytest.raises(UserError, match="holds a finished sft stage; choose another output dir"):
        refuse_other_kind(tmp_path / "a", None)  # rlhf convert never replaces a stage
    killed = tmp_path / "killed"  # an interrupted run of the stage: resumable, so not refused
    (killed / "checkpoint-6").mkdir(parents=True)
    (killed / "config.json").write_text("{}")
    refuse_other_kind(killed, "sft")
    (tmp_path / "empty").mkdir()
    refuse_other_kind(tmp_path / "empty", "reward")


# --- every command that writes checks its paths before it reads anything ------------------------------------


def test_every_writing_command_refuses_an_output_that_is_an_input(tiny_chain, tmp_path, capsys):
    prompts = tmp_path / "prompts.json"
    shutil.copy2(tiny_chain["prompts"], prompts)
    pairs = tmp_path / "pairs.jsonl"
    shutil.copy2(tiny_chain["pairs"], pairs)
    db = tmp_path / "labels.sqlite"
    db.write_bytes(b"")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    pipeline_cfg = tmp_path / "pipeline.yaml"
    pipeline_cfg.write_text((REPO / "tests/data/pipeline_tiny.yaml").read_text())
    cases = [
        (["pairs", "--policy", tiny_chain["sft"], "--prompts", prompts, "--out", prompts], prompts, "--out"),
        (["annotate", pairs, "--annotator", "gold", "--out", pairs], pairs, "--out"),
        (["compare", tiny_chain["sft"], "--prompts", prompts, "--out", tmp_path], tmp_path, "--out"),
        (["compare", tiny_chain["sft"], "--prompts", prompts, "--out", tmp_path / "r", "--export-pairs", prompts],
         prompts, "--export-pairs"),
        (["label", "serve", pairs, "--db", pairs, "--no-serve"], pairs, "--db"),
        (["label", "export", "--db", db, "--out", db], db, "--out"),
        (["pipeline", "--config", pipeline_cfg, "--out", tmp_path], tmp_path, "--out"),
    ]  # fmt: skip
    files = [prompts, pairs, db, gguf, pipeline_cfg]
    before = {p: p.read_bytes() for p in files}
    for argv, out, flag in cases:
        rc, lines = rlhf(argv, capsys)
        assert rc == 2 and len(lines) == 1, (argv, lines)
        assert lines[0].startswith(f"error: {out}:{flag}: "), (argv, lines[0])
        assert "an output must be outside every input" in lines[0]
    assert {p: p.read_bytes() for p in files} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)
