"""The PPO stage's models: reward normalisation, and the LoRA value model that shares the reward backbone."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from torch import nn

from rlhf.io import atomic_write_json
from rlhf.models import load_scalar_head_model
from rlhf.training import lora_config
from rlhf.trl_compat import share_parameters, unshare_parameters


class NormalizedScore(nn.Module):
    """Reward head whose output is (r - mean) / std, with the reward stage's held-out statistics."""

    def __init__(self, score: nn.Module, mean: float, std: float):
        super().__init__()
        self.inner, self.mean, self.std = score, float(mean), max(float(std), 1e-6)

    def forward(self, hidden):
        return (self.inner(hidden) - self.mean) / self.std


def reward_and_value_models(cfg, sft_path, rm, tokenizer, judge=None):
    """PPO's reward and value models. From a reward stage `rm`: both load its dir (the reward model's score
    normalised with the stage's held-out mean/std when `normalize_reward`; under LoRA the value model's frozen
    backbone shares the reward model's weights). Under `reward_judge` the reward is `judge` and the value model is
    the policy's backbone with a fresh scalar head (TRL's examples' way). Under LoRA the value backbone gets an
    adapter."""
    load = functools.partial(
        load_scalar_head_model, tokenizer=tokenizer, trust_remote_code=cfg.trust_remote_code
    )
    if judge is not None:
        reward_model, value_model = judge, load(sft_path)
    else:
        reward_model = load(rm.path)
        if cfg.normalize_reward:
            mean, std = rm.metrics.get("reward_mean", 0.0), rm.metrics.get("reward_std", 1.0)
            reward_model.score = NormalizedScore(reward_model.score, mean, std)
        value_model = load(rm.path)
        if cfg.use_lora:
            share_reward_backbone(value_model, reward_model)
    if cfg.use_lora:
        value_model = add_lora_to_value_backbone(value_model, cfg)
    return reward_model, value_model


def share_reward_backbone(value_model, reward_model) -> None:
    """LoRA mode: the value model's backbone stays frozen (only its adapter and scalar head train) and holds the same
    weights as the reward model's (both load the reward dir), so point it at the reward model's weight tensors
    instead of keeping a second copy: 4 bytes per parameter less (bench/ppo_overhead.py --model smollm2).

    Parameters are shared, modules are not: the adapter added next wraps the value model's layers only, so the
    reward model still scores without it. Both stay frozen (the reward model runs under no_grad; peft freezes the
    value backbone), so nothing ever writes the shared tensors during training."""
    prefix = value_model.base_model_prefix
    share_parameters(getattr(value_model, prefix), getattr(reward_model, prefix))


def add_lora_to_value_backbone(value_model, cfg):
    """LoRA on the value model's backbone (the score head stays fully trainable). TRL calls the backbone via
    `getattr(value_model, base_model_prefix)`, so the peft wrapper goes exactly there."""
    from peft import get_peft_model

    prefix = value_model.base_model_prefix
    backbone = get_peft_model(
        getattr(value_model, prefix),
        lora_config(None, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules),
    )
    setattr(value_model, prefix, backbone)
    for p in value_model.score.parameters():
        p.requires_grad_(True)
    return value_model


def save_value_model(value_model, target: Path, merge_lora: bool) -> None:
    """The trained value model as a plain HF dir; a LoRA backbone is merged (into its own copy of the weights it
    shared with the reward model: merging writes into them)."""
    if merge_lora:
        prefix = value_model.base_model_prefix
        backbone = getattr(value_model, prefix)
        unshare_parameters(backbone)
        setattr(value_model, prefix, backbone.merge_and_unload())
    value_model.save_pretrained(target, safe_serialization=True)


def store_adapter_base(out: Path, base: str | Path) -> None:
    """Record the base model in adapter_config.json the way plain peft reads it (an absolute path, or a hub id),
    so `AutoPeftModelForCausalLM.from_pretrained(out)` works from any working directory. peft writes whatever path
    the base was loaded from, relative to the current directory when the user gave a relative `sft_path`. A moved
    run still loads through the kit, which finds the base through the manifest's relative parent link."""
    cfg_path = out / "adapter_config.json"
    acfg = json.loads(cfg_path.read_text())
    local = Path(base).expanduser()
    acfg["base_model_name_or_path"] = str(local.resolve()) if local.exists() else str(base)
    atomic_write_json(cfg_path, acfg)
