"""Bring your own checkpoints: a reward model written by bare TRL (RewardTrainer, no manifest) and a plain causal LM
dir work where the kit's own stages do (`rlhf score`, `rlhf compare`, `rlhf ppo`), are recorded as external parents
in the manifests that follow, and a policy and reward model with different tokenizers are refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from rlhf import checkpoint

PPO_FAST = [
    "--config", REPO / "configs/demo/ppo.yaml", "--total_episodes", "32", "--per_device_train_batch_size", "16",
    "--local_rollout_forward_batch_size", "16", "--num_ppo_epochs", "1", "--demo_prompts", "32",
    "--num_eval_prompts", "0", "--quiet", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def trl_reward_model(tiny_chain, demo_base, tmp_path_factory) -> Path:
    """A reward model as a TRL user has one: AutoModelForSequenceClassification(num_labels=1) on the demo base,
    trained a few steps by bare `trl.RewardTrainer` on the chain's preferences, saved with `save_model`."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rlhf.templates import format_prompt

    root = tmp_path_factory.mktemp("trl")
    tok = AutoTokenizer.from_pretrained(demo_base)
    model = AutoModelForSequenceClassification.from_pretrained(demo_base, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    prefs = [json.loads(line) for line in tiny_chain["prefs"].read_text().splitlines()]
    rows = [
        {
            "prompt": format_prompt(p["instruction"], p["input"]),
            "chosen": p["chosen"],
            "rejected": p["rejected"],
        }
        for p in prefs
    ]
    args = RewardConfig(
        output_dir=str(root / "trainer"), max_steps=3, per_device_train_batch_size=8, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, max_length=128,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    trainer.train()
    trainer.save_model(str(root / "rm"))
    tok.save_pretrained(root / "rm")
    assert not checkpoint.is_finished(root / "rm")
    return root / "rm"


def test_a_trl_reward_model_scores_pairs_and_compares(trl_reward_model, tiny_chain, tmp_path):
    res = run_cli("score", trl_reward_model, "--pairs", tiny_chain["prefs"])
    assert res.stdout.startswith("pairwise accuracy: ")
    out = tmp_path / "report"
    run_cli(
        "compare", tiny_chain["sft"], "--prompts", tiny_chain["prompts"], "--reward", trl_reward_model,
        "--out", out, "--limit", "4", "--num-samples", "1", "--sweep-prompts", "0", "--overopt-prompts", "0",
        "--max-new-tokens", "4",
    )  # fmt: skip
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(r["reward_score"], float) for r in rows)


def test_ppo_with_a_trl_reward_model_records_it_as_an_external_parent(trl_reward_model, tiny_chain, tmp_path):
    out = tmp_path / "ppo"
    run_cli(
        "ppo",
        "--sft_path",
        tiny_chain["sft"],
        "--reward_path",
        trl_reward_model,
        "--output_dir",
        out,
        *PPO_FAST,
    )
    stage = checkpoint.require(out, kind="ppo")
    assert [p.kind for p in stage.parents()] == ["sft"]
    (ext,) = stage.external_parents()
    assert ext.role == "reward" and ext.path == trl_reward_model.resolve()
    (ref,) = [r for r in stage.manifest["parents"] if r["kind"] == "external"]
    assert not Path(ref["path"]).is_absolute() and (out / ref["path"]).resolve() == trl_reward_model.resolve()
    assert ref["abs_path"] == str(trl_reward_model.resolve()) and ref["hub_id"] is None
    assert ref["tokenizer_fingerprint"] == stage.tokenizer_fingerprint
    assert [s.kind for s in checkpoint.lineage(out)] == ["ppo", "sft"]
    shown = run_cli("inspect", out).stdout
    assert f"external {trl_reward_model.resolve()}  (reward, no rlhf_stage.json)" in shown


def test_ppo_on_a_plain_causal_lm_with_lora_loads_onto_it_after_a_move(trl_reward_model, demo_base, tmp_path):
    """A causal LM dir the kit did not write as the policy (sft_path): the LoRA adapter stage loads onto it through
    the manifest's external parent, also when the run dir (base included) is moved."""
    run = tmp_path / "run"
    shutil.copytree(demo_base, run / "base")
    shutil.copytree(trl_reward_model, run / "rm")
    run_cli(
        "ppo", "--sft_path", run / "base", "--reward_path", run / "rm", "--output_dir", run / "ppo",
        "--use_lora", "true", *PPO_FAST,
    )  # fmt: skip
    stage = checkpoint.require(run / "ppo", kind="ppo")
    assert stage.parents() == [] and {e.role for e in stage.external_parents()} == {"policy", "reward"}
    assert stage.base_model == str((run / "base").resolve())
    shutil.move(run, tmp_path / "moved")
    moved = tmp_path / "moved" / "ppo"
    assert {e.path for e in checkpoint.require(moved, "ppo").external_parents()} == {
        tmp_path / "moved" / "base",
        tmp_path / "moved" / "rm",
    }
    gen = run_cli("generate", moved, "--instruction", "Pick the biggest number.", "--max-new-tokens", "3")
    assert gen.stdout.strip(), gen.stderr


def test_a_reward_model_with_another_tokenizer_is_refused_in_one_line(trl_reward_model, tiny_chain, tmp_path):
    from transformers import AutoTokenizer

    other = shutil.copytree(trl_reward_model, tmp_path / "rm_other_tokenizer")
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra_token>"])
    tok.save_pretrained(other)
    out = tmp_path / "ppo"
    res = run_cli(
        "ppo",
        "--sft_path",
        tiny_chain["sft"],
        "--reward_path",
        other,
        "--output_dir",
        out,
        *PPO_FAST,
        check=False,
    )
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"error: {other.resolve()}: tokenizer fingerprint differs from ")
    assert line.endswith("the two models use different tokenizers")
    assert not out.exists()


def test_a_hub_reward_model_is_recorded_with_its_hub_id_and_commit(
    trl_reward_model, tiny_chain, tmp_path, monkeypatch
):
    """A hub id (here from a local hub cache, offline) as reward_path: the manifest records the id and the commit
    the cache resolved it to."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-rm"
    shutil.copytree(trl_reward_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert run_cli("score", "someone/tiny-rm", "--pairs", tiny_chain["prefs"]).stdout.startswith(
        "pairwise accuracy"
    )
    out = tmp_path / "ppo"
    run_cli(
        "ppo",
        "--sft_path",
        tiny_chain["sft"],
        "--reward_path",
        "someone/tiny-rm",
        "--output_dir",
        out,
        *PPO_FAST,
    )
    (ref,) = [r for r in checkpoint.require(out, "ppo").manifest["parents"] if r["kind"] == "external"]
    assert (ref["hub_id"], ref["revision"], ref["path"], ref["role"]) == (
        "someone/tiny-rm",
        commit,
        None,
        "reward",
    )
    assert (
        "external someone/tiny-rm  (reward, no rlhf_stage.json)  revision " + commit
        in run_cli("inspect", out).stdout
    )


def test_a_plain_causal_lm_dir_samples_pairs(demo_base, tiny_chain, tmp_path):
    out = tmp_path / "pairs.jsonl"
    res = run_cli("pairs", "--policy", demo_base, "--prompts", tiny_chain["prompts"], "--limit", "3",
                  "--n", "2", "--max-new-tokens", "4", "--out", out)  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["responses"]) == 2 for r in rows)
    assert rows[0]["policy"] == {"path": str(demo_base), "kind": "model", "manifest_sha256": None}
    assert "has no rlhf_stage.json: loaded as a plain HF model" in res.stderr


def test_a_reward_stage_on_a_plain_causal_lm_records_it_as_external(demo_base, tiny_chain, tmp_path):
    import reward
    from rlhf.config import build_config

    stage = reward.run(build_config(reward.RewardStageConfig, {
        "config": REPO / "configs/demo/reward.yaml", "sft_path": str(demo_base), "pairs_path": str(tiny_chain["prefs"]),
        "output_dir": str(tmp_path / "reward"), "num_train_epochs": 1, "quiet": True, "save_strategy": "no"}))  # fmt: skip
    assert stage.parents() == [] and stage.base_model == str(demo_base.resolve())
    (ext,) = stage.external_parents()
    assert (ext.role, ext.path) == ("policy", demo_base.resolve())
    assert [s.kind for s in checkpoint.lineage(stage.path)] == ["reward"]
