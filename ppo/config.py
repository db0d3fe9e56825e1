"""PPO stage config: our fields + every TRL `PPOConfig` field, one flat YAML mapping.

The implementation details that matter (Huang et al., "The N+ Implementation Details of RLHF with PPO") are
all here with their defaults: stop at EOS (`stop_token: eos`) and `missing_eos_penalty`, reward normalisation
with the reward stage's mean/std (`normalize_reward`), per-token KL penalty (`kl_coef`, `kl_estimator`), the value
model initialised from the reward model (from the policy under `reward_judge`), `response_length`,
`whiten_rewards` (advantages are always whitened by TRL), `num_ppo_epochs` and `num_mini_batches`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from trl.experimental.ppo import PPOConfig

from rlhf.config import DatasetOptions, LoraOptions, StageOptions
from rlhf.judge_rewards import judge_credit_field


@dataclass
class PPOStageConfig(StageOptions, DatasetOptions, LoraOptions, PPOConfig):
    """PPO against a trained reward model, starting from the SFT policy."""

    # TRL's names (its PPO script's) for our keys; rlhf.config.resolve_aliases.
    KEY_ALIASES: ClassVar[dict[str, str]] = {
        "use_peft": "use_lora",
        "dataset_name": "prompts_path",
        "sft_model_path": "sft_path",
        "reward_model_path": "reward_path",
    }

    sft_path: str = field(
        default="runs/sft", metadata={"help": "Finished sft stage: policy and reference policy."}
    )
    reward_path: str = field(
        default="runs/reward", metadata={"help": "Finished reward stage: reward and value model."}
    )
    reward_judge: str | None = field(
        default=None,
        metadata={
            "help": "A task (constraints, demo) whose gold judge, a program, rewards PPO instead of a reward model "
            "(ppo/judge_reward.py): reward_path is not read and the value model starts as the policy with a new "
            "scalar head; the judge's scores are used as they are (normalize_reward applies to reward models). "
            "Every prompt must be that task's."
        },
    )
    judge_credit: str = judge_credit_field()
    sft_model_path: str | None = field(default=None, metadata={"help": "TRL's name for sft_path."})
    reward_model_path: str | None = field(default=None, metadata={"help": "TRL's name for reward_path."})
    prompts_path: str | None = field(
        default=None,
        metadata={
            "help": "Alpaca rows whose instruction/input are the PPO prompts: a json/jsonl/csv/parquet file, a "
            "dataset dir or a hub dataset id."
        },
    )
    # DatasetOptions and LoraOptions (rlhf.config) keys whose help or default is this stage's own.
    dataset_name: str | None = field(
        default=None, metadata={"help": "TRL's name for prompts_path (a path or a hub dataset id)."}
    )
    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split of the same dataset whose first num_eval_prompts rows are the sample-generation "
            "prompts; null: the train split's first rows."
        },
    )
    task: str = field(
        default="demo", metadata={"help": "Task (rlhf.tasks) whose prompts task_prompts draws, e.g. demo."}
    )
    task_prompts: int = field(
        default=0,
        metadata={"help": "If > 0 and prompts_path is unset: this many prompts of `task` (its train split)."},
    )
    task_kinds: str = field(
        default="", metadata={"help": "Comma-separated kinds of `task` to draw (empty: the task's defaults)."}
    )
    demo_prompts: int = field(
        default=0, metadata={"help": "Old name of task_prompts (task_prompts wins when both are set)."}
    )
    demo_kinds: str = field(default="", metadata={"help": "Old name of task_kinds (task_kinds wins)."})
    num_eval_prompts: int = field(
        default=8, metadata={"help": "Held-out prompts for TRL's sample-generation table (0 disables it)."}
    )
    max_prompt_length: int = field(
        default=256, metadata={"help": "Prompts longer than this are dropped and counted."}
    )
    normalize_reward: bool = field(
        default=True,
        metadata={
            "help": "Score = (r - mean) / std with the reward stage's held-out statistics (not with reward_judge)."
        },
    )
    value_warmup: int = field(
        default=0,
        metadata={
            "help": "PPO updates at the start that train only the value model (policy frozen): it starts as the "
            "reward model, which never learnt to score the prefixes PPO's advantages need (ppo/value_warmup.py)."
        },
    )
    kl_stop: float | None = field(
        default=None, metadata={"help": "Stop early once objective/kl exceeds this many nats (null: never)."}
    )
    use_lora: bool = field(
        default=False,
        metadata={"help": "LoRA policy (reference = adapter disabled) and LoRA value-model backbone."},
    )
    # No LoRA dropout: PPO's ratio compares the policy's log-probs across passes (rollout, update), where
    # dropout is noise; TRL turns the model's own dropout off for PPO too.
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    merge: bool = field(
        default=False, metadata={"help": "LoRA only: save the policy merged into a standalone model dir."}
    )
    template: str | None = field(
        default=None,
        metadata={
            "help": "Prompt template (alpaca or chat) for an sft_path without a manifest; a stage's own is used."
        },
    )
    # PPOConfig / TrainingArguments defaults that suit this stage.
    output_dir: str = field(default="runs/ppo", metadata={"help": "Where the stage writes its checkpoint."})
    missing_eos_penalty: float | None = field(
        default=1.0, metadata={"help": "Subtracted from the score of responses that never emit EOS."}
    )
    stop_token: str | None = field(
        default="eos", metadata={"help": "Truncate responses at EOS (eos or null)."}
    )
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; TRL's configs still default the
    # old name to True (slower, and a deprecation warning). Off unless asked for, under the new name.
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing."}
    )
    activation_checkpointing: bool | None = field(
        default=False, metadata={"help": "Recompute activations to save memory (slower)."}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (opt-in)."})
    report_to: str | list[str] = field(
        default="none",
        metadata={
            "help": "Trackers: none, or tensorboard, wandb, trackio (a name, a list or a comma string)."
        },
    )
    save_strategy: str = field(
        default="steps",
        metadata={"help": "When to save resumable checkpoints (policy, value model, optimizer)."},
    )
    save_steps: float = field(default=10, metadata={"help": "Save a checkpoint every N PPO updates."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the newest N checkpoints."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N PPO updates."})
    dataloader_pin_memory: bool = field(
        default=False, metadata={"help": "Pin host memory (only helps on GPU)."}
    )


def minibatch_problem(cfg: PPOStageConfig) -> str | None:
    """Why cfg's num_mini_batches would not be what PPO does, or None. TRL 1.12's PPOTrainer wraps each
    micro-batch in accelerator.accumulate, which steps the optimizer every gradient_accumulation_steps micro-batches
    across minibatch boundaries (huggingface/trl#5645): with both keys > 1 an epoch takes fewer optimizer steps than
    num_mini_batches (one when gradient_accumulation_steps is a multiple of num_mini_batches), and its
    per-minibatch stats (policy/approxkl_avg, policy/entropy_avg, val/ratio, ...) average in the zeros of the slots
    no micro-batch fills."""
    n, g, per_device = cfg.num_mini_batches, cfg.gradient_accumulation_steps, cfg.per_device_train_batch_size
    if n <= 1 or g <= 1 or (per_device * g) % n:  # TRL refuses a batch that does not split into n itself
        return None
    minibatch = per_device * g // n
    micro_per_epoch = n * math.ceil(minibatch / per_device)  # TRL's micro-batch loop over each minibatch
    return (
        f"num_mini_batches={n} with gradient_accumulation_steps={g}: TRL 1.12's PPO accumulates gradients across "
        f"minibatches, so a PPO epoch takes {micro_per_epoch / g:g} optimizer step(s), not {n}, and its logged "
        f"policy/value stats average in zeros (huggingface/trl#5645). For {n} steps per epoch set "
        f"gradient_accumulation_steps: 1 and per_device_train_batch_size: {per_device * g} (the episodes per update; "
        f"local_rollout_forward_batch_size bounds the rollout's batches), or num_mini_batches: 1"
    )
