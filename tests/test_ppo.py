"""PPO stage through TRL: full and LoRA modes end to end, reload, moved run dirs, and the chain checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from rlhf import checkpoint

PPO_FAST = [
    "--total_episodes",
    "64",
    "--per_device_train_batch_size",
    "32",
    "--local_rollout_forward_batch_size",
    "32",
    "--num_ppo_epochs",
    "1",
    "--demo_prompts",
    "64",
    "--num_eval_prompts",
    "0",
    "--quiet",
    "true",
]


def ppo(chain, out, *extra, check=True):
    return run_cli(
        "ppo",
        "--config",
        REPO / "configs/demo/ppo.yaml",
        "--sft_path",
        chain["sft"],
        "--reward_path",
        chain["reward"],
        "--output_dir",
        out,
        *PPO_FAST,
        *extra,
        check=check,
    )


def generates(path: Path) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tok("Which number is the largest?", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return tok.decode(out[0])


def test_full_mode_end_to_end(tiny_chain, tmp_path):
    out = tmp_path / "ppo"
    ppo(tiny_chain, out)
    stage = checkpoint.require(out, kind="ppo")
    assert {p.kind for p in stage.parents()} == {"sft", "reward"}
    assert (out / "value_model" / "model.safetensors").is_file()  # saved so training can resume
    assert stage.metrics["episodes"] == 64 and stage.metrics["episodes_per_second"] > 0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    keys = {
        "objective/scores",
        "objective/kl",
        "objective/rlhf_reward",
        "objective/entropy",
        "policy/clipfrac_avg",
        "val/clipfrac_avg",
        "loss/value_avg",
        "episodes_per_second",
    }
    assert keys <= set(log[-1])
    generates(out)  # reloads with AutoModelForCausalLM and generates


def test_lora_adapter_survives_a_move_and_merges(tiny_chain, tmp_path):
    from rlhf.models import load_policy_from_stage

    run = tmp_path / "run"
    shutil.copytree(tiny_chain["sft"], run / "sft")
    shutil.copytree(tiny_chain["reward"], run / "reward")
    # the reward manifest points at its SFT parent relative to itself: rewrite nothing, it still resolves
    ppo({"sft": run / "sft", "reward": run / "reward"}, run / "ppo", "--use_lora", "true")
    assert (run / "ppo" / "adapter_model.safetensors").is_file()
    # plain peft reads base_model_name_or_path against the current directory: it is absolute, so the adapter
    # loads from anywhere (here: a subprocess in an unrelated directory)
    base = json.loads((run / "ppo" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base) == (run / "sft").resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plain_peft = (
        "import sys; from peft import AutoPeftModelForCausalLM; "
        "m = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1]); print(type(m).__name__)"
    )
    res = subprocess.run(
        [sys.executable, "-c", plain_peft, str(run / "ppo")], cwd=elsewhere, capture_output=True, text=True
    )
    assert res.returncode == 0 and res.stdout.strip() == "PeftModelForCausalLM", res.stderr[-2000:]
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    # moved: the kit finds the base through the manifest's relative parent link (the absolute path is stale)
    gen = run_cli(
        "generate", moved / "ppo", "--instruction", "Pick the biggest number.", "--max-new-tokens", "3"
    )
    assert gen.stdout.strip(), gen.stderr
    model, tok = load_policy_from_stage(checkpoint.require(moved / "ppo", kind="ppo"))
    assert (
        model.generate(**tok("Pick the biggest number.", return_tensors="pt"), max_new_tokens=3).shape[1] > 0
    )
    ppo(
        {"sft": moved / "sft", "reward": moved / "reward"},
        moved / "merged",
        "--use_lora",
        "true",
        "--merge",
        "true",
    )
    assert (moved / "merged" / "model.safetensors").is_file()
    generates(moved / "merged")


def test_lora_value_model_shares_the_frozen_reward_backbone(tiny_chain):
    """LoRA mode keeps one copy of the reward dir's backbone: the value model's frozen base weights are the reward
    model's tensors, its adapter does not leak into reward scores, and saving (which merges) leaves them intact."""
    from types import SimpleNamespace

    import torch

    from ppo.models import add_lora_to_value_backbone, share_reward_backbone, unshare_parameters
    from rlhf.models import load_scalar_head_model, load_tokenizer

    tok = load_tokenizer(tiny_chain["reward"])
    reward = load_scalar_head_model(tiny_chain["reward"], tok)
    value = load_scalar_head_model(tiny_chain["reward"], tok)
    share_reward_backbone(value, reward)
    lora = SimpleNamespace(lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules="all-linear")
    value = add_lora_to_value_backbone(value, lora)
    reward_storage = {p.data_ptr() for p in reward.model.parameters()}
    base = [p for n, p in value.model.named_parameters() if "lora_" not in n]
    assert base and all(p.data_ptr() in reward_storage for p in base)
    trainable = [n for n, p in value.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("score.") for n in trainable), trainable

    ids = tok(["Which number is the largest? 3, 9, 4"], return_tensors="pt")
    with torch.no_grad():
        before = reward(**ids).logits.clone()
        assert torch.allclose(value(**ids).logits, before)  # LoRA starts as a no-op: value = reward model
        for n, p in value.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)  # as if trained
        assert not torch.allclose(value(**ids).logits, before)
        assert torch.equal(reward(**ids).logits, before)  # the adapter wraps the value model's layers only
        unshare_parameters(value.model)
        value.model = value.model.merge_and_unload()  # what the stage does before saving
        assert torch.equal(reward(**ids).logits, before)
        assert not torch.allclose(value(**ids).logits, before)


def test_mismatched_parents_fail_before_loading(tiny_chain, tmp_path, monkeypatch, demo_base):
    """A reward model trained on another SFT run with another tokenizer is refused, naming both manifests."""
    from rlhf.demo import build_demo_checkpoint
    from rlhf.io import atomic_write_json
    from rlhf.tasks.demo import make_sft_rows

    other = tmp_path / "other"
    build_demo_checkpoint(other / "base", seed=1, vocab_size=600)
    atomic_write_json(other / "sft.json", make_sft_rows(64, seed=1, kinds=("largest",)))
    run_cli(
        "sft",
        "--config",
        REPO / "configs/demo/sft.yaml",
        "--model_name_or_path",
        other / "base",
        "--data_path",
        other / "sft.json",
        "--output_dir",
        other / "sft",
        "--num_train_epochs",
        "1",
        "--quiet",
        "true",
        "--save_strategy",
        "no",
        "--eval_fraction",
        "0",
    )
    run_cli(
        "reward",
        "--config",
        REPO / "configs/demo/reward.yaml",
        "--sft_path",
        other / "sft",
        "--pairs_path",
        tiny_chain["prefs"],
        "--output_dir",
        other / "reward",
        "--num_train_epochs",
        "1",
        "--quiet",
        "true",
        "--save_strategy",
        "no",
        "--max_pairs",
        "32",
    )

    import ppo.models as ppo_models
    import ppo.train as ppo_train
    from ppo.config import PPOStageConfig

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the chain check")

    monkeypatch.setattr(ppo_train, "load_causal_lm", boom)
    monkeypatch.setattr(ppo_models, "load_scalar_head_model", boom)  # reward and value models load there
    monkeypatch.setattr(ppo_train, "load_tokenizer", boom)
    cfg = PPOStageConfig(
        output_dir=str(tmp_path / "ppo"),
        sft_path=str(tiny_chain["sft"]),
        reward_path=str(other / "reward"),
        demo_prompts=8,
    )
    with pytest.raises(Exception) as e:
        ppo_train.run(cfg)
    msg = str(e.value)
    assert "tokenizer fingerprint differs" in msg
    assert (
        str(other / "reward" / "rlhf_stage.json") in msg and str(tiny_chain["sft"] / "rlhf_stage.json") in msg
    )
    assert not (tmp_path / "ppo").exists()
    res = ppo(tiny_chain | {"reward": other / "reward"}, tmp_path / "ppo2", check=False)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: ")


def test_refuses_wrong_kind_and_unfinished(tiny_chain, tmp_path):
    res = run_cli(
        "ppo",
        "--config",
        REPO / "configs/demo/ppo.yaml",
        "--sft_path",
        tiny_chain["reward"],
        "--reward_path",
        tiny_chain["reward"],
        "--output_dir",
        tmp_path / "p",
        check=False,
    )
    assert res.returncode == 2 and "expected a finished sft stage, found a reward stage" in res.stderr
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_chain["reward"], unfinished)
    (unfinished / "rlhf_stage.json").unlink()
    res = run_cli(
        "ppo",
        "--config",
        REPO / "configs/demo/ppo.yaml",
        "--sft_path",
        tiny_chain["sft"],
        "--reward_path",
        unfinished,
        "--output_dir",
        tmp_path / "p",
        check=False,
    )
    assert res.returncode == 2 and "unfinished run" in res.stderr and not (tmp_path / "p").exists()


def test_minibatches_that_trl_would_merge_are_refused_before_loading(tmp_path):
    # TRL 1.12's PPO steps the optimizer every gradient_accumulation_steps micro-batches across minibatches
    # (huggingface/trl#5645): 4 x 8 episodes in 2 minibatches is one optimizer step an epoch, not 2.
    config = tmp_path / "ppo.yaml"
    settings = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4, "num_mini_batches": 2}
    lines = (REPO / "configs/demo/ppo.yaml").read_text().splitlines()
    kept = [line for line in lines if line.split(":")[0] not in settings]
    config.write_text("\n".join(kept + [f"{k}: {v}" for k, v in settings.items()]) + "\n")
    out = tmp_path / "p"
    res = run_cli("ppo", "--config", config, "--output_dir", out, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {config}:key 'num_mini_batches': num_mini_batches=2 with gradient_accumulation_steps=4: TRL "
        "1.12's PPO accumulates gradients across minibatches, so a PPO epoch takes 1 optimizer step(s), not 2, and "
        "its logged policy/value stats average in zeros (huggingface/trl#5645). For 2 steps per epoch set "
        "gradient_accumulation_steps: 1 and per_device_train_batch_size: 32 (the episodes per update; "
        "local_rollout_forward_batch_size bounds the rollout's batches), or num_mini_batches: 1"
    )
    assert not out.exists()


def test_value_warmup_trains_only_the_value_model_first(tiny_chain, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "ppo"
    # 2 updates of 32 episodes, a checkpoint after each: the first trains the value model alone
    ppo(
        tiny_chain,
        out,
        "--use_lora",
        "true",
        "--value_warmup",
        "1",
        "--save_steps",
        "1",
        "--keep_checkpoints",
        "true",
    )

    def moved(weights: dict, part: str) -> bool:  # LoRA B starts at zero: non-zero means trained
        tensors = [t for name, t in weights.items() if part in name]
        assert tensors, f"no {part} in {sorted(weights)[:5]}"
        return any(t.abs().sum() > 0 for t in tensors)

    first, last = out / "checkpoint-1", out / "checkpoint-2"
    assert not moved(load_file(first / "adapter_model.safetensors"), "lora_B")  # the policy waited
    assert moved(load_file(first / "value_model.safetensors"), "lora_B")  # the value model learnt
    assert moved(load_file(last / "adapter_model.safetensors"), "lora_B")  # then the policy trained
    manifest = checkpoint.require(out, kind="ppo")
    assert manifest.metrics["episodes"] == 64


def test_value_warmup_is_refused_under_deepspeed(tiny_chain, tmp_path, monkeypatch):
    # DeepSpeed steps its own flattened copies of the gradients: dropping the policy's would not hold it still
    from ppo import train as ppo_train
    from ppo.config import PPOStageConfig
    from rlhf.config import build_config
    from rlhf.errors import UserError

    out = tmp_path / "p"
    cfg = build_config(PPOStageConfig, {
        "config": REPO / "configs/demo/ppo.yaml", "sft_path": str(tiny_chain["sft"]),
        "reward_path": str(tiny_chain["reward"]), "output_dir": str(out), "value_warmup": 1})  # fmt: skip
    monkeypatch.setattr(ppo_train, "deepspeed_launch", lambda: True)
    with pytest.raises(UserError, match="key 'value_warmup': value_warmup holds the policy still"):
        ppo_train.run(cfg)
    assert not out.exists()
