"""Reward stage config: our fields + every `trl.RewardConfig` (TrainingArguments) field, one flat YAML mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import RewardConfig

from rlhf.config import DatasetOptions, LoraOptions, StageOptions


@dataclass
class RewardStageConfig(StageOptions, DatasetOptions, LoraOptions, RewardConfig):
    """Bradley-Terry reward model on preference pairs, initialised from a finished SFT checkpoint."""

    # TRL's names (its reward script's) for our keys; rlhf.config.resolve_aliases.
    KEY_ALIASES: ClassVar[dict[str, str]] = {"use_peft": "use_lora", "dataset_name": "pairs_path"}
    # What shapes a run besides rlhf.resume_settings.TRAINER_SETTINGS: recorded in each checkpoint, and a run
    # resumes only from a checkpoint with the same (rlhf.lifecycle.StageRun).
    RESUME_SETTINGS: ClassVar[tuple[str, ...]] = (
        "max_length",
        "template",
        "max_pairs",
        "label_aggregation",
        "center_rewards_coefficient",
    )

    sft_path: str = field(
        default="runs/sft", metadata={"help": "A finished sft stage dir: backbone and tokenizer."}
    )
    pairs_path: str = field(
        default="",
        metadata={
            "help": "Preference pairs (ours, TRL prompt/chosen/rejected, or HH-RLHF transcripts): a json/jsonl/"
            "csv/parquet file, a `datasets` dir or a hub dataset id."
        },
    )
    template: str | None = field(
        default=None,
        metadata={
            "help": "Prompt template (alpaca or chat) for an sft_path without a manifest (a plain or hub model); "
            "a stage parent's own template is used."
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
            "help": "Split of the same dataset to hold out for eval accuracy; null: eval_pairs_path or eval_fraction."
        },
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of pairs held out when eval_pairs_path is unset."}
    )
    max_pairs: int | None = field(
        default=None, metadata={"help": "Use at most this many pairs (after shuffling)."}
    )
    label_aggregation: str = field(
        default="none",
        metadata={
            "help": "none, or borda: order each training pair by its prompt's net wins over all its labelled pairs "
            "(flip the pairs that disagree, drop equal ones); denoises several labelled pairs per prompt. Held-out "
            "pairs keep their labels."
        },
    )
    use_lora: bool = field(
        default=False, metadata={"help": "Train a LoRA adapter (merged into the saved model)."}
    )
    # RewardConfig / TrainingArguments defaults that suit this stage.
    output_dir: str = field(
        default="runs/reward", metadata={"help": "Where the stage writes its checkpoint."}
    )
    max_length: int | None = field(
        default=512, metadata={"help": "Pairs longer than this (prompt + response) are dropped and counted."}
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the pairs."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Pairs per batch per device."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Eval pairs per batch per device."})
    center_rewards_coefficient: float | None = field(
        default=0.01,
        metadata={"help": "Pulls mean reward toward 0 (Eisenstein et al. 2023); null to disable."},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate pairwise accuracy."})
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
