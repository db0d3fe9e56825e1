"""SFT stage config: our fields + every `transformers.TrainingArguments` field, one flat YAML mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from transformers import TrainingArguments

from rlhf.config import DatasetOptions, LoraOptions, StageOptions


@dataclass
class SFTStageConfig(StageOptions, DatasetOptions, LoraOptions, TrainingArguments):
    """Supervised fine-tuning. Defaults follow Stanford Alpaca's recipe where it has one."""

    # TRL's names (its SFT script's) for our keys; rlhf.config.resolve_aliases.
    KEY_ALIASES: ClassVar[dict[str, str]] = {"use_peft": "use_lora", "dataset_name": "data_path"}
    # What shapes a run besides rlhf.resume_settings.TRAINER_SETTINGS: recorded in each checkpoint, and a run
    # resumes only from a checkpoint with the same (rlhf.lifecycle.StageRun).
    RESUME_SETTINGS: ClassVar[tuple[str, ...]] = ("max_length", "template", "eval_fraction")

    model_name_or_path: str = field(
        default="facebook/opt-125m", metadata={"help": "Base model: a hub id or a local HF dir."}
    )
    data_path: str = field(
        default="",
        metadata={
            "help": "Training rows (Alpaca instruction/input/output, messages, prompt/completion or text): a "
            "json/jsonl/csv/tsv (optionally .gz) or parquet file, a `datasets` dir or a hub dataset id."
        },
    )
    eval_data_path: str | None = field(
        default=None,
        metadata={
            "help": "Held-out rows for eval loss (any data_path source); if unset, eval_fraction is split off."
        },
    )
    # DatasetOptions and LoraOptions (rlhf.config) keys whose help or default is this stage's own.
    dataset_name: str | None = field(
        default=None, metadata={"help": "TRL's name for data_path (a path or a hub dataset id)."}
    )
    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split of the same dataset to hold out for eval loss; null: eval_data_path or eval_fraction."
        },
    )
    eval_fraction: float = field(
        default=0.05,
        metadata={"help": "Share of data_path held out for eval loss when eval_data_path is unset."},
    )
    max_length: int = field(default=512, metadata={"help": "Truncate prompt + response to this many tokens."})
    template: str = field(
        default="alpaca",
        metadata={
            "help": "alpaca (Alpaca's two prompt templates, for base models) or chat (the tokenizer's chat "
            "template: loss on every assistant turn)."
        },
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Concatenate a batch into one row with position_ids (no pad tokens); false pads to longest."
        },
    )
    skip_prompt_logits: bool = field(
        default=True,
        metadata={
            "help": "Run the LM head and loss only at positions whose next token is trained (not the masked "
            "prompt): the same loss, less compute and memory. Models without logits_to_keep ignore it."
        },
    )
    # TrainingArguments defaults that suit this stage (Alpaca: lr 2e-5, 3 epochs, cosine, warmup 0.03, wd 0).
    output_dir: str = field(default="runs/sft", metadata={"help": "Where the stage writes its checkpoint."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs over the training rows."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "LR schedule."})
    warmup_steps: float = field(
        default=0.03,
        metadata={"help": "Warmup: a float in [0, 1) is a share of all steps, an integer a step count."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Eval batch size per device."})
    eval_strategy: str = field(
        default="epoch", metadata={"help": "When to compute eval loss: no, steps, epoch."}
    )
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
    bf16: bool = field(
        default=False, metadata={"help": "bf16 mixed precision (opt-in; 3x slower on most CPUs)."}
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
