"""What the PPO stage runs on, checked before any model loads: a finished SFT stage, a reward model trained on it,
and a launch that does not shard the models."""

from __future__ import annotations

from rlhf import checkpoint
from rlhf.distributed import sharded_launch
from rlhf.errors import UserError


def check_chain(cfg) -> tuple[checkpoint.Stage, checkpoint.Stage]:
    """Before any model loads: SFT and reward dirs are finished stages of the right kinds, and the reward model
    was trained on this SFT checkpoint (or at least with the identical tokenizer)."""
    sft = checkpoint.require(cfg.sft_path, kind="sft")
    rm = checkpoint.require(cfg.reward_path, kind="reward")
    if sft.sha256 not in {p.get("manifest_sha256") for p in rm.manifest.get("parents", [])}:
        checkpoint.require_same_tokenizer(sft, rm)
    return sft, rm


def refuse_sharded_launch(cfg) -> None:
    if sharding := sharded_launch(cfg):
        raise UserError(
            f"PPO runs single-process, DDP or DeepSpeed ZeRO-1/2, not {sharding}: this stage does not gather a "
            "sharded policy and value model to save them (use LoRA to fit memory instead)",
            cfg.config_path or "command line",
        )
