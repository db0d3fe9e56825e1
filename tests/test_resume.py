"""Interrupted runs resume: each stage is SIGKILLed as a subprocess after its first checkpoint, rerun with the same
command (`resume: auto`), and must end where an uninterrupted run with the same seed ends: final metrics to 1e-4
(in fact the weights come out identical on CPU). Also the pipeline killed inside the reward step.

Not compared: `train_loss` and `train_runtime` (transformers reports the mean loss of the steps the last process
trained, so a resumed run's differs by design).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _faults import (
    compared_metrics,
    has_checkpoint,
    kill_when,
    manifest,
    max_weight_difference,
    run,
    run_here,
    stage_args,
    start,
    write_prefs,
)
from conftest import REPO

from rlhf.errors import UserError


@pytest.fixture(scope="module")
def chain(tiny_chain, demo_base, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    return {
        "base": demo_base,
        "sft_data": tiny_chain["root"] / "sft.json",
        "sft": tiny_chain["sft"],
        "reward": tiny_chain["reward"],
        "prefs": write_prefs(root / "prefs.jsonl"),
    }


# PPO's resume is this kit's own (ppo/resumable.py) and runs by default; SFT's and reward's are transformers' own
# Trainer resume behind our plumbing (unit-tested below), about 15 s each on 2 cores: -m slow, and bench/faults.py
# kills every stage at 5 random moments.
@pytest.mark.parametrize("stage", [pytest.param("sft", marks=pytest.mark.slow),
                                   pytest.param("reward", marks=pytest.mark.slow), "ppo"])  # fmt: skip
def test_sigkill_after_first_checkpoint_then_resume_matches_an_uninterrupted_run(stage, chain, tmp_path):
    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_here(stage_args(stage, chain, ref)) == 0  # in this process: one interpreter start less

    proc = start(stage_args(stage, chain, out), tmp_path / "killed.log")
    assert kill_when(proc, has_checkpoint(out, stage)), "the stage finished before it could be killed"
    assert not (out / "rlhf_stage.json").exists()  # killed: unfinished, and refused as a parent
    assert run(stage_args(stage, chain, out), tmp_path / "killed.log") == 0, (
        tmp_path / "killed.log"
    ).read_text()

    resumed = manifest(out)
    assert resumed["resumed_from"] and resumed["resumed_from"].startswith("checkpoint-")
    a, b = compared_metrics(ref, stage), compared_metrics(out, stage)
    assert a.keys() == b.keys() and a
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=1e-4), k
    assert max_weight_difference(ref, out) <= 1e-6
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "the resumed log repeats or drops steps"
    assert not list(out.glob("checkpoint-*"))  # keep_checkpoints false: cleaned up once finished
    if stage == "ppo":
        ref_log = [json.loads(x) for x in (ref / "log.jsonl").read_text().splitlines()]
        got_log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        key = "objective/scores"
        assert [r[key] for r in got_log if key in r] == pytest.approx([r[key] for r in ref_log if key in r])


@pytest.mark.slow  # three 2-process runs, about a minute
def test_ppo_under_ddp_resumes_exactly(chain, tmp_path):
    """Two processes (torchrun, gloo): each rank's RNG and prompt-stream position (the sampler generator that
    accelerate keeps in sync across ranks) come back, killed mid-pass over the prompts."""
    import os
    import subprocess
    import sys

    from ppo.resumable import resume_files
    from rlhf.training import complete_checkpoints

    def torchrun(out: Path) -> list:
        args = stage_args("ppo", chain, out)[1:] + ["--total_episodes", "192", "--demo_prompts", "96"]
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ppo",
                *map(str, args)]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for k in ("ACCELERATE_USE_CPU", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    for target in (ref, out):
        if target == out:
            proc = subprocess.Popen(torchrun(out), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            assert kill_when(proc, lambda: bool(complete_checkpoints(out, resume_files(2))))
            assert not (out / "rlhf_stage.json").exists()
        res = subprocess.run(torchrun(target), env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
    assert manifest(out)["resumed_from"] == "checkpoint-2"  # 3 prompt batches per rank and pass: mid-pass
    assert compared_metrics(out, "ppo") == compared_metrics(ref, "ppo")
    assert max_weight_difference(ref, out) == 0.0


@pytest.fixture(scope="module")
def kept_ppo(chain, tmp_path_factory):
    """A short PPO run (in this process) that keeps its checkpoints."""
    out = tmp_path_factory.mktemp("kept") / "ppo"
    assert (
        run_here(stage_args("ppo", chain, out) + ["--keep_checkpoints", "true", "--total_episodes", "32"])
        == 0
    )
    return out


def test_ppo_checkpoint_stays_a_plain_model_dir_and_holds_the_value_model(kept_ppo):
    """What rlhf compare's over-optimisation plot loads (keep_checkpoints), plus what a resume needs."""
    from transformers import AutoModelForCausalLM

    ckpt = kept_ppo / "checkpoint-2"
    for f in ("model.safetensors", "value_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
              "ppo_loop_state.safetensors", "trainer_state.json"):  # fmt: skip
        assert (ckpt / f).is_file(), f
    assert AutoModelForCausalLM.from_pretrained(ckpt).config.model_type == "llama"


def test_a_complete_checkpoint_loads_for_generation_and_one_cut_short_is_refused(kept_ppo, tmp_path, capsys):
    from rlhf.cli import main

    args = ["--instruction", "Pick the biggest number.", "--input", "1, 5, 3", "--max-new-tokens", "3"]
    capsys.readouterr()
    assert main(["generate", str(kept_ppo / "checkpoint-2"), *args]) == 0
    cut = tmp_path / "checkpoint-2"
    shutil.copytree(kept_ppo / "checkpoint-2", cut)
    (cut / "trainer_state.json").unlink()  # killed before transformers' last write
    capsys.readouterr()
    assert main(["generate", str(cut), *args]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {cut}: unfinished run")


def test_resume_refuses_a_checkpoint_from_other_settings(kept_ppo, chain, tmp_path, capsys):
    out = tmp_path / "ppo"
    shutil.copytree(kept_ppo, out)
    (out / "rlhf_stage.json").unlink()  # as if killed after its last checkpoint
    ckpt = out / "checkpoint-2"
    capsys.readouterr()
    args = stage_args("ppo", chain, out) + ["--total_episodes", "32"]
    assert run_here(args + ["--per_device_train_batch_size", "8"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == (
        f"error: {ckpt}:key 'resume': checkpoint was written with per_device_train_batch_size 16, this run has 8: "
        "rerun with the settings it was made with, or pass --resume never to start over"
    )
    # a run against the gold judge does not continue one against a reward model (other reward, other value model)
    assert run_here(args + ["--reward_judge", "demo"]) == 2
    assert "checkpoint was written with reward_judge None, this run has 'demo'" in capsys.readouterr().err
    assert run_here(args + ["--resume", out / "nope"]) == 2
    assert "not a complete trainer checkpoint" in capsys.readouterr().err
    (ckpt / "value_model.safetensors").unlink()  # an old-style checkpoint: not resumable, refused by name
    assert run_here(args + ["--resume", ckpt]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        f"error: {ckpt}:key 'resume': not a complete trainer checkpoint"
    )


def test_a_finished_constant_lr_run_continues_to_more_updates(kept_ppo, chain, tmp_path, capsys):
    """Under a constant learning rate the first N updates of a longer run are those of an N-update run, so a
    finished run's last checkpoint continues it to more updates in a new output dir, ending exactly where an
    uninterrupted run to that length ends. Under the default linear decay (kept_ppo) it is refused: the learning
    rate at every update depends on the total."""

    def ppo(out: Path, episodes: int, *extra) -> list:
        return stage_args("ppo", chain, out) + ["--total_episodes", str(episodes), "--lr_scheduler_type", "constant",
                                                "--num_sample_generations", "0", *extra]  # fmt: skip

    short, ref, longer = tmp_path / "short", tmp_path / "uninterrupted", tmp_path / "continued"
    assert run_here(ppo(short, 32, "--keep_checkpoints", "true")) == 0  # 2 updates of 16 episodes
    assert run_here(ppo(ref, 64)) == 0
    assert run_here(ppo(longer, 64, "--resume", short / "checkpoint-2")) == 0

    assert manifest(longer)["resumed_from"] == str(
        short / "checkpoint-2"
    )  # another run's checkpoint: by path
    a, b = compared_metrics(ref, "ppo"), compared_metrics(longer, "ppo")
    assert a.keys() == b.keys() and a
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=1e-4), k
    assert max_weight_difference(ref, longer) <= 1e-6
    ref_log = [json.loads(x) for x in (ref / "log.jsonl").read_text().splitlines()]
    got_log = [json.loads(x) for x in (longer / "log.jsonl").read_text().splitlines()]
    key = "objective/scores"
    assert [r["step"] for r in got_log if key in r] == [3, 4]  # the new dir logs the updates it ran
    assert [r[key] for r in got_log if key in r] == pytest.approx([r[key] for r in ref_log if key in r][2:])
    assert {r["lr"] for r in got_log if "lr" in r} == {r["lr"] for r in ref_log if "lr" in r}  # one rate
    # throughput: the 32 episodes this run trained over the time they took, not the whole run's 64
    m = manifest(longer)["metrics"]
    assert m["episodes"] == 64 and m["episodes_per_second"] == pytest.approx(32 / m["train_seconds"])
    rates = [(r["episodes_per_second"], (r["episode"] - 32) / r["time"]) for r in got_log if "episode" in r]
    assert rates and all(got == pytest.approx(want) for got, want in rates)

    linear = stage_args("ppo", chain, tmp_path / "linear") + ["--total_episodes", "64"]
    capsys.readouterr()
    assert run_here(linear + ["--resume", kept_ppo / "checkpoint-2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {kept_ppo / 'checkpoint-2'}:key 'resume': checkpoint was written with total_episodes 32, this run "
        "has 64 (a run continues to a larger total_episodes only under lr_scheduler_type constant or "
        "constant_with_warmup): rerun with the settings it was made with, or pass --resume never to start over"
    )
    switched = linear + ["--resume", kept_ppo / "checkpoint-2", "--lr_scheduler_type", "constant"]
    assert run_here(switched) == 2  # nor may a decaying run's checkpoint go on at a constant rate
    assert "written with lr_scheduler_type 'linear', this run has 'constant'" in capsys.readouterr().err
    assert not (tmp_path / "linear").exists()  # refused before anything was written


def test_overwriting_a_finished_stage_drops_its_checkpoints_first(tmp_path):
    """A finished stage's kept checkpoints must not be 'resumed' by the run that replaces it: begin() marks the
    dir unfinished (manifest gone), then removes them."""
    from rlhf import checkpoint

    out = tmp_path / "sft"
    (out / "checkpoint-6").mkdir(parents=True)
    (out / "checkpoint-6" / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    (out / "rlhf_stage.json").write_text("{}")
    with pytest.raises(UserError, match="holds a finished stage"):
        checkpoint.begin(out)
    assert (out / "checkpoint-6").is_dir()  # refused: nothing touched
    checkpoint.begin(out, overwrite=True)
    assert not (out / "rlhf_stage.json").exists() and not list(out.glob("checkpoint-*"))


@pytest.mark.slow  # two SFT runs; the mechanism is checked just above
def test_rerunning_a_finished_stage_with_overwrite_starts_over(chain, tmp_path):
    """A finished stage's kept checkpoints must not be 'resumed' by the run that replaces it."""
    out = tmp_path / "sft"
    args = stage_args("sft", chain, out) + ["--keep_checkpoints", "true"]
    assert run_here(args) == 0
    assert list(out.glob("checkpoint-*"))
    assert run_here(args + ["--overwrite", "true"]) == 0
    assert manifest(out)["resumed_from"] is None


PIPE = REPO / "tests" / "data" / "pipeline_tiny.yaml"


@pytest.mark.slow  # two partial runs of the tiny pipeline, about 25 s
def test_pipeline_killed_inside_reward_redoes_reward_and_after_and_skips_sft(tmp_path):
    import yaml

    cfg = yaml.safe_load(PIPE.read_text())
    # A reward step long enough to be caught mid-run, checkpointing every 10 steps.
    cfg["reward"]["overrides"] = {"max_steps": 60, "per_device_train_batch_size": 1, "save_steps": 10}
    conf = tmp_path / "pipeline.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    args = ["pipeline", "--config", conf, "--out", run_dir, "--quiet"]
    proc = start(args, tmp_path / "first.log")
    assert kill_when(proc, has_checkpoint(run_dir / "reward", "reward")), (tmp_path / "first.log").read_text()
    assert (run_dir / "sft" / "rlhf_stage.json").is_file() and not (
        run_dir / "reward" / "rlhf_stage.json"
    ).exists()
    sft_manifest = (run_dir / "sft" / "rlhf_stage.json").read_bytes()

    assert run(args, tmp_path / "second.log") == 0, (tmp_path / "second.log").read_text()
    log = (tmp_path / "second.log").read_text()
    for step in ("data", "base", "sft", "pairs", "annotate"):
        assert f"pipeline: {step}: up to date, skipped" in log
    for step in ("reward", "ppo", "compare"):
        assert f"pipeline: {step}: running" in log
    assert (run_dir / "sft" / "rlhf_stage.json").read_bytes() == sft_manifest
    assert manifest(run_dir / "reward")["resumed_from"].startswith("checkpoint-")
    assert (run_dir / "report" / "metrics.json").is_file()
    shutil.rmtree(run_dir)


def test_a_checkpoint_cut_short_is_not_resumed(tmp_path):
    """trainer_state.json is transformers' last write: missing, truncated by the kill, or (PPO) without the files a
    resume needs, and the dir is passed over for the one before."""
    from rlhf.training import complete_checkpoints, resolve_resume

    state = json.dumps({"global_step": 4, "log_history": []})
    for n, text in ((4, state), (8, state[:-5]), (12, None)):
        (tmp_path / f"checkpoint-{n}").mkdir()
        if text is not None:
            (tmp_path / f"checkpoint-{n}" / "trainer_state.json").write_text(text)
    (tmp_path / "checkpoint-x").mkdir()
    assert complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-4"]
    assert resolve_resume("auto", tmp_path) == str(tmp_path / "checkpoint-4")
    assert resolve_resume("never", tmp_path) is None
    assert resolve_resume("auto", tmp_path, required=("value_model.safetensors",)) is None
    with pytest.raises(UserError, match="not a complete trainer checkpoint"):
        resolve_resume(str(tmp_path / "checkpoint-8"), tmp_path)


def test_a_resumed_log_keeps_the_rows_up_to_its_checkpoint(tmp_path):
    from rlhf.training import LOG_FILE, start_log

    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    rows = [json.dumps({"step": s, "loss": 1.0 / (s + 1)}) for s in range(4)]
    (tmp_path / LOG_FILE).write_text("\n".join(rows) + '\n{"step": 4, "lo')  # the kill cut the last line
    start_log(tmp_path, str(ckpt))
    assert (tmp_path / LOG_FILE).read_text().splitlines() == rows[:3]
    start_log(tmp_path, None)  # a fresh run starts a fresh log
    assert not (tmp_path / LOG_FILE).exists()


def test_recorded_settings_are_checked_key_by_key(tmp_path):
    """rlhf.resume_settings, as every Trainer stage (SFT, reward, DPO, RLOO) uses it on resume."""
    from rlhf.resume_settings import SETTINGS_FILE, TRAINER_LENGTH_KEYS, check_checkpoint_settings

    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    now = {"seed": 0, "max_steps": 8, "lr_scheduler_type": "linear", "beta": 0.05}
    check_checkpoint_settings(ckpt, now, TRAINER_LENGTH_KEYS)  # an older checkpoint records none: not checked
    check_checkpoint_settings(None, now, TRAINER_LENGTH_KEYS)  # a fresh start
    (ckpt / SETTINGS_FILE).write_text(json.dumps({**now, "max_steps": 4, "extra": 1}))
    with pytest.raises(
        UserError, match=r"max_steps 4, this run has 8 \(a run continues to a larger max_steps only"
    ):
        check_checkpoint_settings(ckpt, now, TRAINER_LENGTH_KEYS)
    (ckpt / SETTINGS_FILE).write_text(json.dumps({**now, "max_steps": 4, "lr_scheduler_type": "constant"}))
    check_checkpoint_settings(
        ckpt, now | {"lr_scheduler_type": "constant"}, TRAINER_LENGTH_KEYS
    )  # a longer run
    with pytest.raises(UserError, match="max_steps 4, this run has 2"):  # a shorter one is another run
        check_checkpoint_settings(
            ckpt, now | {"lr_scheduler_type": "constant", "max_steps": 2}, TRAINER_LENGTH_KEYS
        )
    with pytest.raises(UserError, match="beta 0.05, this run has 0.1"):
        check_checkpoint_settings(
            ckpt, now | {"lr_scheduler_type": "constant", "beta": 0.1}, TRAINER_LENGTH_KEYS
        )
    (ckpt / SETTINGS_FILE).write_text(
        json.dumps({**now, "max_steps": None})
    )  # not a number: a plain mismatch
    with pytest.raises(UserError, match=r"max_steps None, this run has 8: rerun"):
        check_checkpoint_settings(ckpt, now, TRAINER_LENGTH_KEYS)
    (ckpt / SETTINGS_FILE).write_text('{"seed": ')
    with pytest.raises(UserError, match="unreadable settings record"):
        check_checkpoint_settings(ckpt, now, TRAINER_LENGTH_KEYS)
