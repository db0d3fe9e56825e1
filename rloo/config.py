"""RLOO stage config: our fields + every `trl.RLOOConfig` field, one flat YAML mapping.

The prompt keys are PPO's (a PPO config's prompt section works here unchanged, `template` included); the reward
is scored as PPO scores it: the reward model on prompt + response token ids in the policy's template (alpaca or
chat), normalised with the reward stage's mean/std (`normalize_reward`), minus `missing_eos_penalty` for a response
that never ends. The KL to the SFT policy is RLOO's own: `beta` times the sequence's summed log-ratio, subtracted
from the reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import RLOOConfig

from rlhf.config import DatasetOptions, LoraOptions, StageOptions
from rlhf.judge_rewards import judge_credit_field


@dataclass
class RLOOStageConfig(StageOptions, DatasetOptions, LoraOptions, RLOOConfig):
    """RLOO against a trained reward model, starting from the SFT policy (reference: the SFT policy, or with LoRA
    the policy with its adapter disabled)."""

    # TRL's names (its PPO and RLOO scripts') for our keys; rlhf.config.resolve_aliases.
    KEY_ALIASES: ClassVar[dict[str, str]] = {
        "use_peft": "use_lora",
        "dataset_name": "prompts_path",
        "sft_model_path": "sft_path",
        "reward_model_path": "reward_path",
    }
    # What shapes a run besides rlhf.resume_settings.TRAINER_SETTINGS: recorded in each checkpoint, and a run
    # resumes only from a checkpoint with the same (rlhf.lifecycle.StageRun).
    RESUME_SETTINGS: ClassVar[tuple[str, ...]] = (
        "reward_judge",
        "judge_credit",
        "num_generations",
        "steps_per_generation",
        "num_iterations",
        "beta",
        "temperature",
        "max_completion_length",
        "normalize_reward",
        "missing_eos_penalty",
    )

    sft_path: str = field(
        default="runs/sft", metadata={"help": "Finished sft stage (or any causal LM): policy and reference."}
    )
    reward_path: str = field(
        default="runs/reward",
        metadata={"help": "Finished reward stage, or any one-output sequence-classification model."},
    )
    reward_judge: str | None = field(
        default=None,
        metadata={
            "help": "A task (constraints, demo) whose gold judge, a program, is the reward instead of a reward "
            "model (rloo/reward.py JudgeScore, as PPO's reward_judge): reward_path is not read; the judge's "
            "scores are used as they are (normalize_reward applies to reward models), minus "
            "missing_eos_penalty for a reply that never ends. Every prompt must be that task's."
        },
    )
    judge_credit: str = judge_credit_field()
    sft_model_path: str | None = field(default=None, metadata={"help": "TRL's name for sft_path."})
    reward_model_path: str | None = field(default=None, metadata={"help": "TRL's name for reward_path."})
    prompts_path: str | None = field(
        default=None,
        metadata={
            "help": "Alpaca rows whose instruction/input are the prompts: a json/jsonl/csv/parquet file, a "
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
            "help": "Split of the same dataset whose first num_eval_prompts rows are held out; null: the train "
            "split's first rows."
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
        default=0, metadata={"help": "Old name of task_prompts, as in the PPO stage (task_prompts wins)."}
    )
    demo_kinds: str = field(default="", metadata={"help": "Old name of task_kinds (task_kinds wins)."})
    num_eval_prompts: int = field(
        default=0,
        metadata={
            "help": "Prompts held out of training (a prompts file's first rows, or the task's eval split)."
        },
    )
    max_prompt_length: int = field(
        default=256, metadata={"help": "Prompts longer than this are dropped and counted."}
    )
    normalize_reward: bool = field(
        default=True,
        metadata={"help": "Score = (r - mean) / std with the reward stage's held-out statistics."},
    )
    missing_eos_penalty: float | None = field(
        default=1.0, metadata={"help": "Subtracted from the score of responses that never emit EOS."}
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Train a LoRA adapter (reference = adapter disabled), merged into the saved policy."
        },
    )
    # No LoRA dropout: the policy's log-probs are compared with the rollout's and the reference's, where
    # dropout is noise.
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    template: str | None = field(
        default=None,
        metadata={
            "help": "Prompt template (alpaca or chat) for an sft_path without a manifest; a stage's own is used."
        },
    )
    # RLOOConfig / TrainingArguments defaults that suit this stage.
    output_dir: str = field(default="runs/rloo", metadata={"help": "Where the stage writes its checkpoint."})
    num_generations: int | None = field(
        default=4, metadata={"help": "Samples per prompt (k); each is baselined by the other k-1."}
    )
    max_completion_length: int | None = field(
        default=53, metadata={"help": "Response length in tokens (PPO's response_length)."}
    )
    beta: float = field(default=0.05, metadata={"help": "KL coefficient (PPO's kl_coef)."})
    learning_rate: float = field(default=1e-6, metadata={"help": "Peak learning rate."})
    save_strategy: str = field(default="steps", metadata={"help": "When to save resumable checkpoints."})
    save_steps: float = field(default=10, metadata={"help": "Save a checkpoint every N updates."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the newest N checkpoints."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N updates."})
    report_to: str | list[str] = field(
        default="none",
        metadata={
            "help": "Trackers: none, or tensorboard, wandb, trackio (a name, a list or a comma string)."
        },
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (opt-in)."})
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; TRL's configs still default the
    # old name to True (slower, and a deprecation warning). Off unless asked for, under the new name.
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing."}
    )
    activation_checkpointing: bool | None = field(
        default=False, metadata={"help": "Recompute activations to save memory (slower)."}
    )
    dataloader_pin_memory: bool = field(
        default=False, metadata={"help": "Pin host memory (only helps on GPU)."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "DDP: look for parameters without a gradient every step (slower; only needed for models "
            "that skip layers)."
        },
    )
