"""The PPO stage's inputs: a finished SFT stage and a reward model trained on it."""

from __future__ import annotations

from rlhf import checkpoint


def check_chain(cfg) -> tuple[checkpoint.Stage, checkpoint.Stage]:
    """Before any model loads: SFT and reward dirs are finished stages of the right kinds, and the reward model
    was trained on this SFT checkpoint (or at least with the identical tokenizer)."""
    sft = checkpoint.require(cfg.sft_path, kind="sft")
    rm = checkpoint.require(cfg.reward_path, kind="reward")
    if sft.sha256 not in {p.get("manifest_sha256") for p in rm.manifest.get("parents", [])}:
        checkpoint.require_same_tokenizer(sft, rm)
    return sft, rm
