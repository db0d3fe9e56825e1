"""DPO stage config: our fields + every `trl.DPOConfig` (TrainingArguments) field, one flat YAML mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import DPOConfig

from rlhf.config import DatasetOptions, LoraOptions, StageOptions


@dataclass
class DPOStageConfig(StageOptions, DatasetOptions, LoraOptions, DPOConfig):
    """DPO on preference pairs, starting from the SFT policy; the reference policy is the SFT policy (with LoRA:
    the policy with its adapter disabled)."""

    # TRL's names (its DPO script's) for our keys; rlhf.config.resolve_aliases.
    KEY_ALIASES: ClassVar[dict[str, str]] = {"use_peft": "use_lora", "dataset_name": "pairs_path"}
    # What shapes a run besides rlhf.resume_settings.TRAINER_SETTINGS: recorded in each checkpoint, and a run
    # resumes only from a checkpoint with the same (rlhf.lifecycle.StageRun).
    RESUME_SETTINGS: ClassVar[tuple[str, ...]] = ("max_length", "max_pairs", "beta", "loss_type")

    sft_path: str = field(
        default="runs/sft", metadata={"help": "Finished sft stage (or any causal LM): policy and reference."}
    )
    pairs_path: str = field(
        default="",
        metadata={
            "help": "Preference pairs in any format the reward stage reads (ours, TRL, HH-RLHF): a json/jsonl/"
            "csv/parquet file, a `datasets` dir or a hub dataset id."
        },
    )
    eval_pairs_path: str | None = field(
        default=None,
        metadata={
            "help": "Held-out pairs (e.g. an earlier run's heldout_pairs.jsonl); pairs_path's pairs of their "
            "prompts are left out of training. If unset, eval_fraction of pairs_path is held out."
        },
    )
    # DatasetOptions and LoraOptions (rlhf.config) keys whose help or default is this stage's own.
    dataset_name: str | None = field(
        default=None, metadata={"help": "TRL's name for pairs_path (a path or a hub dataset id)."}
    )
    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split of the same dataset to hold out for eval; null: eval_pairs_path or eval_fraction."
        },
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of pairs held out when eval_pairs_path is unset."}
    )
    max_pairs: int | None = field(
        default=None, metadata={"help": "Use at most this many pairs (after shuffling)."}
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Train a LoRA adapter (reference = adapter disabled), merged into the saved policy."
        },
    )
    # No LoRA dropout: the loss compares the policy's log-probs with the reference's, where dropout is noise
    # (DPOConfig's disable_dropout turns the model's own dropout off too).
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    # DPOConfig / TrainingArguments defaults that suit this stage.
    output_dir: str = field(default="runs/dpo", metadata={"help": "Where the stage writes its checkpoint."})
    max_length: int | None = field(
        default=512, metadata={"help": "Pairs longer than this (prompt + response) are dropped and counted."}
    )
    beta: float = field(
        default=0.1,
        metadata={"help": "Strength of the implicit KL penalty (higher: closer to the SFT policy)."},
    )
    learning_rate: float = field(default=5e-7, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the pairs."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Pairs per batch per device."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Eval pairs per batch per device."})
    eval_strategy: str = field(default="no", metadata={"help": "When to evaluate during training."})
    save_strategy: str = field(default="steps", metadata={"help": "When to save resumable checkpoints."})
    save_steps: float = field(default=200, metadata={"help": "Save a checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the newest N checkpoints."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
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
