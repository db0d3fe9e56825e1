"""Stage 1 recipe: Alpaca-style SFT. Read top to bottom: config -> data -> model -> Trainer -> save -> manifest."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer, set_seed

from rlhf import checkpoint
from rlhf.config import config_to_dict, parse_config
from rlhf.distributed import (
    can_evaluate_before_training,
    end_of_run,
    final_model,
    gather_state_dict,
    main_print,
)
from rlhf.errors import UserError, exit_on_user_error
from rlhf.models import (
    IGNORE_INDEX,
    load_causal_lm,
    load_tokenizer,
    missing_special_tokens,
    smart_tokenizer_and_embedding_resize,
    sync_special_token_ids,
)
from rlhf.paths import check_stage_paths
from rlhf.resume_metrics import train_reporting_whole_run
from rlhf.training import (
    JsonlLogger,
    logged_value,
    lora_config,
    quiet_trainer,
    remove_checkpoints,
    resolve_resume,
    start_log,
)
from sft.config import SFTStageConfig
from sft.data import fingerprint_rows, load_alpaca, preprocess, sources_and_targets, split_rows


def tokenize_rows(rows: list[dict], tokenizer, max_length: int, template: str) -> Dataset:
    sources, targets = sources_and_targets(rows, tokenizer.eos_token, template)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = preprocess(sources, targets, tokenizer, max_length)
    for w in caught:
        main_print(f"warning: {w.message}")
    if not enc["input_ids"]:
        raise UserError(
            f"no row has a trainable token at max_length={max_length}", "data", "key 'max_length'"
        )
    return Dataset.from_dict({"input_ids": enc["input_ids"], "labels": enc["labels"]})


@torch.no_grad()
def isolates_packed_sequences(model) -> bool:
    """Whether `model` keeps the examples of a flattened (padding-free) row apart, as if each ran alone.

    DataCollatorWithFlattening relies on the model building a block-diagonal mask from position_ids. Llama, GPT-2
    and most decoders in transformers 5 do (without a KV cache, as in the Trainer); some do not, e.g. OPT (Alpaca's
    default model facebook/opt-125m) passes no position_ids to its mask, so every example would attend to the
    ones before it in the row: silently wrong training. A two-example probe decides."""
    was_training = model.training
    model.eval()
    try:
        vocab = model.get_input_embeddings().weight.shape[0]
        a, b = [t % vocab for t in (5, 9, 13)], [t % vocab for t in (7, 11, 3, 17)]
        device = next(model.parameters()).device
        packed = (
            model(
                input_ids=torch.tensor([a + b], device=device),
                position_ids=torch.tensor([list(range(len(a))) + list(range(len(b)))], device=device),
                use_cache=False,
            )
            .logits[0, len(a) :]
            .float()
        )
        alone = model(input_ids=torch.tensor([b], device=device), use_cache=False).logits[0].float()
    finally:
        model.train(was_training)
    return torch.allclose(packed, alone, atol=1e-3, rtol=1e-2)


def final_eval_loss(trainer) -> float:
    """Eval loss of the trained model: the Trainer's own last evaluation when it ran after the last step (an
    epoch-end or step eval; the same weights and data give the same number), else one more evaluation."""
    state = trainer.state
    if trainer.args.load_best_model_at_end:  # the weights now are the best checkpoint's, not the last step's
        return trainer.evaluate()["eval_loss"]
    for entry in reversed(state.log_history):
        if "eval_loss" in entry:
            if entry.get("step") == state.global_step:
                return entry["eval_loss"]
            break
    return trainer.evaluate()["eval_loss"]


def make_collator(tokenizer, padding_free: bool, skip_prompt_logits: bool = False):
    if padding_free:
        # One [1, total_tokens] row with position_ids restarting per example: no pad tokens are computed.
        # transformers builds a block-diagonal causal mask from the position_ids, so examples do not attend
        # to each other.
        collator = DataCollatorWithFlattening(return_position_ids=True)
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    return SkipPromptLogits(collator) if skip_prompt_logits else collator


class SkipPromptLogits:
    """Wrap a collator so the model computes logits only where the loss looks at them.

    Alpaca's labels mask the prompt (often most of a row), yet a causal LM runs its LM head and the softmax over
    the whole vocabulary at every position. The batch gets `logits_to_keep` (the sequence positions whose next
    token is trained in any row) and `shift_labels` (those next tokens, -100 elsewhere): transformers' models
    slice the hidden states before the LM head and its causal-LM loss takes `shift_labels` as given, and the
    Trainer counts the trained tokens from `shift_labels`, so the loss, its gradient-accumulation scaling and
    the eval loss are the ones of the full logits (tests/test_sft_stage.py); the LM head runs on the trained
    positions only (about 40% of a demo row) and the logits are [batch, kept, vocab], not [batch, length, vocab]."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, features):
        batch = self.inner(features)
        shifted = batch.pop("shift_labels", None)
        if shifted is None:
            shifted = batch["labels"][..., 1:]
        keep = (shifted != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = shifted[:, keep].contiguous()
        return batch


def keeps_logits_selectively(model) -> bool:
    """Whether `model` (or the model inside a peft wrapper) takes a tensor `logits_to_keep` and passes loss
    keywords (`shift_labels`) to transformers' causal-LM loss: the models built on transformers' generic
    forward do (Llama, Mistral, Qwen2, GPT-2, ...). Checked on the forward's signature."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "logits_to_keep" in params and any(p.kind is p.VAR_KEYWORD for p in params.values())


def rebuild_model(cfg: SFTStageConfig, vocab_size: int | None, lora):
    """An unsharded copy of the model as it was trained (resized vocab, LoRA wrapping) for gathered weights."""
    model = load_causal_lm(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    if vocab_size is not None:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    return model


def main(cfg: SFTStageConfig) -> checkpoint.Stage:
    started = time.time()
    set_seed(cfg.seed)
    check_stage_paths("sft", cfg)  # inputs are never written; --overwrite replaces a sft stage only
    checkpoint.check_output_dir(cfg.output_dir, overwrite=cfg.overwrite)  # refuse before minutes of loading
    if not cfg.data_path:
        raise UserError(
            "data_path is required (Alpaca .json/.jsonl or a saved datasets dir)",
            cfg.config_path or "command line",
            "key 'data_path'",
        )
    rows = load_alpaca(cfg.data_path)
    if cfg.eval_data_path:
        train_rows, eval_rows = rows, load_alpaca(cfg.eval_data_path)
    else:
        train_rows, eval_rows = split_rows(rows, cfg.eval_fraction, cfg.seed)

    tokenizer = load_tokenizer(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    model = load_causal_lm(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    added = smart_tokenizer_and_embedding_resize(missing_special_tokens(tokenizer), tokenizer, model)
    sync_special_token_ids(model, tokenizer)
    lora = None
    if cfg.use_lora:
        lora = lora_config("CAUSAL_LM", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)

    if cfg.padding_free and not isolates_packed_sequences(model):
        raise UserError(
            f"not supported by this model ({model.config.model_type}): its attention ignores the packed "
            "position_ids, so flattened examples would attend to each other; set padding_free false",
            cfg.config_path or "command line",
            "key 'padding_free'",
        )

    train_ds = tokenize_rows(train_rows, tokenizer, cfg.max_length, cfg.template)
    eval_ds = tokenize_rows(eval_rows, tokenizer, cfg.max_length, cfg.template) if eval_rows else None
    if eval_ds is None:
        cfg.eval_strategy = "no"

    out = checkpoint.begin(cfg.output_dir, overwrite=cfg.overwrite)
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    cfg.disable_tqdm = cfg.quiet or cfg.disable_tqdm
    trainer = Trainer(
        model=model,
        args=cfg,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=make_collator(
            tokenizer, cfg.padding_free, cfg.skip_prompt_logits and keeps_logits_selectively(model)
        ),
        processing_class=tokenizer,
        callbacks=[JsonlLogger(out)],
    )
    if cfg.quiet:
        quiet_trainer(trainer)
    resume_from = resolve_resume(cfg.resume, out)
    if trainer.is_world_process_zero():
        start_log(out, resume_from)
    metrics: dict = {
        "train_rows": len(train_ds),
        "eval_rows": len(eval_ds or []),
        "added_special_tokens": added,
    }
    metrics["dropped_rows"] = len(train_rows) - len(train_ds) + (len(eval_rows) - len(eval_ds or []))
    if eval_ds is not None and resume_from is None and can_evaluate_before_training(trainer):
        metrics["initial_eval_loss"] = trainer.evaluate()["eval_loss"]
    elif resume_from is not None and (initial := logged_value(out, "eval_loss", step=0)) is not None:
        metrics["initial_eval_loss"] = initial  # measured by the run that was interrupted
    result = train_reporting_whole_run(trainer, resume_from)  # train_loss etc. of the whole run, if resumed
    metrics["train_loss"] = result.training_loss
    metrics["train_runtime"] = result.metrics.get("train_runtime")
    n_tokens = sum(sum(1 for t in ids if t != -100) for ids in train_ds["labels"])
    metrics["train_target_tokens"] = n_tokens
    if eval_ds is not None:
        metrics["eval_loss"] = final_eval_loss(trainer)

    # Only rank 0 writes the stage. A sharded model (ZeRO-3, FSDP) is gathered first, by every rank.
    gathered = gather_state_dict(trainer)
    if not trainer.is_world_process_zero():
        return None
    final = final_model(
        trainer, gathered, lambda: rebuild_model(cfg, len(tokenizer) if added else None, lora), cfg.use_lora
    )
    final.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not cfg.keep_checkpoints:
        remove_checkpoints(out)
    return checkpoint.finish(
        out,
        "sft",
        config=config_to_dict(cfg),
        tokenizer=tokenizer,
        metrics=metrics,
        data_fingerprint=fingerprint_rows(train_rows),
        started_at=started,
        template=cfg.template,
        base_model=cfg.model_name_or_path,
        extra={"resumed_from": resume_from and Path(resume_from).name},
    )


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf sft") -> int:
    (cfg,) = parse_config([SFTStageConfig], argv, prog=prog)
    stage = main(cfg)
    end_of_run()
    if stage is not None:
        print(f"sft: finished {stage.path} (eval_loss {stage.metrics.get('eval_loss', float('nan')):.4f})")
    return 0
