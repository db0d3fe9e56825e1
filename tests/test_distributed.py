"""Multi-process runs on CPU: `torchrun --nproc_per_node 2 -m <stage>` (DDP over gloo) and DeepSpeed ZeRO on 2 CPU
processes, on the tiny demo model. Each run must write the same checkpoint a single process writes: exactly one
manifest, weights that load, nothing extra from rank 1, metrics, and each message once."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from rlhf import checkpoint
from rlhf.checkpoint import MANIFEST
from rlhf.preferences import HELD_OUT_FILE

NPROC = 2


def torchrun(module: str, *args, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for k in ("ACCELERATE_USE_CPU", "ACCELERATE_USE_DEEPSPEED", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(NPROC)]
    res = subprocess.run(
        [*cmd, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"torchrun -m {module} exited {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}"
        )
    return res


def files(d: Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*")}


def log_rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()]


def check_stage(out: Path, kind: str, single_process: Path | set[str]) -> checkpoint.Stage:
    """One manifest, written by a 2-process run; the same files as a single-process run of the stage."""
    assert [p.relative_to(out).as_posix() for p in out.rglob(MANIFEST)] == [MANIFEST]
    stage = checkpoint.require(out, kind=kind)
    assert stage.manifest["processes"] == NPROC
    expected = single_process if isinstance(single_process, set) else files(single_process)
    assert files(out) == expected, "stray or missing files (rank 1 must write nothing)"
    return stage


SFT_ARGS = ["--config", REPO / "configs/demo/sft.yaml", "--num_train_epochs", "1", "--save_strategy", "no"]


def sft_args(chain, out):
    return [
        *SFT_ARGS,
        "--model_name_or_path",
        chain["base"],
        "--data_path",
        chain["root"] / "sft.json",
        "--output_dir",
        out,
    ]


@pytest.fixture(scope="module")
def chain(tiny_chain, demo_base):
    """The tiny chain, plus 80 preference pairs (the correct answer over another task's answer): the chain's
    own prefs are a handful of pairs with none held out."""
    from rlhf.io import atomic_write_jsonl
    from rlhf.tasks.demo import make_tasks

    tasks = [t.to_row() for t in make_tasks(81, 11, ("largest", "smallest"))]
    pairs = [
        {"instruction": t["instruction"], "input": t["input"], "chosen": t["output"], "rejected": u["output"]}
        for t, u in zip(tasks, tasks[1:])
        if t["output"] != u["output"]
    ]
    atomic_write_jsonl(tiny_chain["root"] / "pairs80.jsonl", pairs)
    return {**tiny_chain, "base": demo_base, "pairs80": tiny_chain["root"] / "pairs80.jsonl"}


def check_sft(chain, out, res):
    stage = check_stage(out, "sft", chain["sft"])
    m = stage.metrics
    assert math.isfinite(m["eval_loss"]) and math.isfinite(m["train_loss"])
    # DDP split the data: half the optimizer steps of one process over the same rows.
    batch = stage.manifest["config"]["per_device_train_batch_size"]  # from configs/demo/sft.yaml
    assert max(r["step"] for r in log_rows(out)) == math.ceil(m["train_rows"] / (batch * NPROC))
    assert res.stdout.count("sft: finished") == 1
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) > 0
    return stage


def test_sft_ddp_two_processes(chain, tmp_path):
    out = tmp_path / "sft"
    res = torchrun("sft", *sft_args(chain, out))
    stage = check_sft(chain, out, res)
    assert "initial_eval_loss" in stage.metrics
    assert stage.manifest["config"]["ddp_find_unused_parameters"] is False


def test_sft_ddp_overwrite_and_refusal(chain, tmp_path):
    """Both ranks see the finished dir: refused without --overwrite (one error line), replaced with it."""
    out = tmp_path / "sft"
    torchrun("sft", *sft_args(chain, out))
    res = torchrun("sft", *sft_args(chain, out), check=False)
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "holds a finished stage" in errors[0], res.stderr[-3000:]
    res = torchrun("sft", *sft_args(chain, out), "--overwrite", "true")
    check_sft(chain, out, res)


def test_reward_ddp_two_processes(chain, tmp_path):
    out = tmp_path / "reward"
    res = torchrun(
        "reward",
        "--config",
        REPO / "configs/demo/reward.yaml",
        "--sft_path",
        chain["sft"],
        "--pairs_path",
        chain["pairs80"],
        "--output_dir",
        out,
        "--num_train_epochs",
        "1",
        "--save_strategy",
        "no",
    )
    # the chain's own reward stage held no pair out; this one holds some out and writes them (rank 0 alone)
    stage = check_stage(out, "reward", files(chain["reward"]) | {HELD_OUT_FILE})
    m = stage.metrics
    assert {"eval_accuracy", "reward_mean", "reward_std", "train_loss"} <= set(m)
    assert m["eval_pairs"] > 0 and m["train_pairs"] > 50
    assert len((out / HELD_OUT_FILE).read_text().splitlines()) == m["eval_pairs"]
    batch = stage.manifest["config"]["per_device_train_batch_size"]  # from configs/demo/reward.yaml
    assert max(r["step"] for r in log_rows(out)) == math.ceil(m["train_pairs"] / (batch * NPROC))
    assert res.stdout.count("reward: finished") == 1
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 1


@pytest.mark.parametrize(
    "lora",
    [False, pytest.param(True, marks=pytest.mark.slow, id="lora")],
    ids=lambda v: "lora" if v else "full",
)
def test_ppo_ddp_a_few_steps(chain, tmp_path, lora):
    """Full mode, and LoRA mode (TRL 1.12 reads `model.policy` through the DDP wrapper for the reference pass:
    rlhf/trl_compat.py's PPOTrainerCompat)."""
    out = tmp_path / "ppo"
    res = torchrun(
        "ppo",
        "--config",
        REPO / "configs/demo/ppo.yaml",
        "--sft_path",
        chain["sft"],
        "--reward_path",
        chain["reward"],
        "--output_dir",
        out,
        "--total_episodes",
        "64",
        "--per_device_train_batch_size",
        "16",
        "--local_rollout_forward_batch_size",
        "16",
        "--num_ppo_epochs",
        "1",
        "--demo_prompts",
        "64",
        "--num_eval_prompts",
        "0",
        "--quiet",
        "true",
        "--save_strategy",
        "no",  # TRL's own mid-run checkpoints read `model.config` through the DDP wrapper (fails)
        "--kl_stop",
        "null",
        "--use_lora",
        str(lora).lower(),
    )
    weights = (
        {"adapter_config.json", "adapter_model.safetensors"}
        if lora
        else {"config.json", "generation_config.json", "model.safetensors"}
    )
    single = {
        "README.md",
        MANIFEST,
        *weights,
        "tokenizer.json",
        "tokenizer_config.json",
        "log.jsonl",
        "value_model",
        "value_model/config.json",
        "value_model/model.safetensors",
    }
    stage = check_stage(out, "ppo", single)
    assert stage.metrics["episodes"] == 64
    rows = [r for r in log_rows(out) if "objective/kl" in r]
    assert len(rows) == 2  # 64 episodes / (16 per rank x 2 ranks): two PPO updates, each logged once
    assert {"objective/scores", "objective/kl", "loss/value_avg"} <= set(rows[-1])
    assert res.stdout.count("ppo: finished") == 1
    from rlhf.models import load_policy_from_stage

    load_policy_from_stage(stage)  # an adapter dir loads onto its SFT parent


@pytest.mark.slow  # DeepSpeed builds its CPU communication op with g++ on first use (about a minute)
@pytest.mark.parametrize("stage_file", ["ds_zero2.json", "ds_zero3.json"])
def test_sft_deepspeed_two_cpu_processes(chain, tmp_path, stage_file):
    pytest.importorskip("deepspeed")
    out = tmp_path / "sft"
    res = torchrun("sft", *sft_args(chain, out), "--deepspeed", REPO / "configs/accelerate" / stage_file)
    stage = check_sft(chain, out, res)
    assert "initial_eval_loss" not in stage.metrics  # transformers cannot evaluate before training under ZeRO


# ------------------------------------------------------------------------------------------- fast unit checks


def test_begin_on_rank_1_touches_nothing(tmp_path, monkeypatch):
    out = tmp_path / "stage"
    out.mkdir()
    (out / MANIFEST).write_text("{}")
    monkeypatch.setenv("RANK", "1")
    assert checkpoint.begin(out, overwrite=True) == out
    assert (out / MANIFEST).exists()  # rank 0 alone marks the dir unfinished
    monkeypatch.setenv("RANK", "0")
    checkpoint.begin(out, overwrite=True)
    assert not (out / MANIFEST).exists()


def test_launch_without_gpu_selects_cpu_ddp(monkeypatch):
    import torch

    from rlhf import distributed

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    distributed.configure_launch()
    assert os.environ["ACCELERATE_USE_CPU"] == "true"
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    monkeypatch.setenv("WORLD_SIZE", "1")
    distributed.configure_launch()
    assert "ACCELERATE_USE_CPU" not in os.environ


@pytest.mark.parametrize("json_file, expected", [("ds_zero3.json", "ZeRO-3"), ("ds_zero2.json", None)])
def test_sharding_seen_through_an_accelerate_deepspeed_file(monkeypatch, json_file, expected):
    """`accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml` passes the json's path, not its
    stage: PPO must still see ZeRO-3 and refuse it before loading models."""
    from types import SimpleNamespace

    from rlhf.distributed import sharded_launch

    for k in ("ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(REPO / "configs/accelerate" / json_file))
    assert sharded_launch(SimpleNamespace()) == expected
