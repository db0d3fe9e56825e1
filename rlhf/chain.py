"""What an RL stage on a reward model (PPO, RLOO) runs on, checked before any model loads: a finished SFT stage
(or any causal LM) and a reward model trained on it (or one with the identical tokenizer)."""

from __future__ import annotations

from rlhf import checkpoint


def check_chain(cfg, *, reward: bool = True):
    """Before any model loads: the policy is a finished SFT stage or any causal LM dir / hub id, the reward model a
    finished reward stage or any sequence-classification model with one output (the two kinds the kit did not
    write are recorded as external parents), and the reward model was trained on this SFT checkpoint or at least
    uses the identical tokenizer: a different tokenizer is refused (token ids are not re-encoded). `reward=False`
    (PPO's `reward_judge`): the policy alone, as (sft, None)."""
    sft = checkpoint.require_parent(cfg.sft_path, "sft", role="policy")
    if not reward:
        return sft, None
    rm = checkpoint.require_parent(cfg.reward_path, "reward", role="reward")
    trained_on_sft = isinstance(sft, checkpoint.Stage) and sft.sha256 in {
        p.get("manifest_sha256") for p in getattr(rm, "manifest", {}).get("parents", [])
    }
    if not trained_on_sft:
        checkpoint.require_same_tokenizer(sft, rm)
    return sft, rm
