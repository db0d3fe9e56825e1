"""Stage 1 recipe: SFT on Alpaca rows, conversations, prompt/completion or text, with the Alpaca template or the
model's own chat template. Read top to bottom: data -> tokenizer/model -> collator -> Trainer -> save."""

from __future__ import annotations

import warnings

from datasets import Dataset
from transformers import Trainer

from rlhf import checkpoint
from rlhf.config import parse_config
from rlhf.distributed import can_evaluate_before_training, end_of_run, main_print
from rlhf.errors import UserError, exit_on_user_error
from rlhf.lifecycle import StageRun
from rlhf.models import (
    load_causal_lm,
    load_tokenizer,
    missing_special_tokens,
    smart_tokenizer_and_embedding_resize,
    sync_special_token_ids,
)
from rlhf.sources import stage_sources
from rlhf.templates import check_template
from rlhf.training import logged_value, lora_config_for
from sft.collators import keeps_logits_selectively, make_collator
from sft.config import SFTStageConfig
from sft.data import encode_examples, split_rows
from sft.evaluation import final_eval_loss
from sft.formats import fingerprint_rows, load_sft_rows
from sft.packing import isolates_packed_sequences


def tokenize_rows(rows: list[dict], tokenizer, max_length: int, template: str) -> Dataset:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = encode_examples(rows, tokenizer, max_length, template)
    for w in caught:
        main_print(f"warning: {w.message}")
    if not enc["input_ids"]:
        raise UserError(
            f"no row has a trainable token at max_length={max_length}", "data", "key 'max_length'"
        )
    return Dataset.from_dict({"input_ids": enc["input_ids"], "labels": enc["labels"]})


def rebuild_model(cfg: SFTStageConfig, vocab_size: int | None, lora):
    """An unsharded copy of the model as it was trained (resized vocab, LoRA wrapping) for gathered weights."""
    model = load_causal_lm(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    if vocab_size is not None:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    return model


def run(cfg: SFTStageConfig) -> checkpoint.Stage | None:
    """Train the SFT stage into cfg.output_dir; the finished Stage on rank 0, None on other ranks."""
    job = StageRun("sft", cfg)
    where = cfg.config_path or "command line"
    source, held_out = stage_sources(cfg, "data_path", "eval_data_path")
    rows = load_sft_rows(source, cfg.template)
    if held_out is not None:
        train_rows, eval_rows = rows, load_sft_rows(held_out, cfg.template)
    else:
        train_rows, eval_rows = split_rows(rows, cfg.eval_fraction, cfg.seed)

    tokenizer = load_tokenizer(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    check_template(cfg.template, tokenizer)  # `chat` without a chat template: refused before the model loads
    # Alpaca: add the special tokens the tokenizer lacks (a pad token at least), resizing the embeddings.
    model = load_causal_lm(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    added = smart_tokenizer_and_embedding_resize(missing_special_tokens(tokenizer), tokenizer, model)
    sync_special_token_ids(model, tokenizer)
    lora = lora_config_for(cfg, "CAUSAL_LM")
    if cfg.padding_free and not isolates_packed_sequences(model):
        raise UserError(
            f"not supported by this model ({model.config.model_type}): its attention ignores the packed "
            "position_ids, so flattened examples would attend to each other; set padding_free false",
            where,
            "key 'padding_free'",
        )

    # Loss on the responses only: Alpaca's output + EOS, or every assistant turn + its end-of-turn token (chat).
    train_ds = tokenize_rows(train_rows, tokenizer, cfg.max_length, cfg.template)
    eval_ds = tokenize_rows(eval_rows, tokenizer, cfg.max_length, cfg.template) if eval_rows else None
    if eval_ds is None:
        cfg.eval_strategy = "no"

    out = job.begin()
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    collator = make_collator(
        tokenizer, cfg.padding_free, cfg.skip_prompt_logits and keeps_logits_selectively(model)
    )
    trainer = job.attach(
        Trainer(
            model=model,
            args=cfg,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=job.callbacks(),
        )
    )
    metrics: dict = {
        "train_rows": len(train_ds),
        "eval_rows": len(eval_ds or []),
        "added_special_tokens": added,
        "dropped_rows": len(train_rows) - len(train_ds) + (len(eval_rows) - len(eval_ds or [])),
    }
    resumed = job.resume_point() is not None
    if eval_ds is not None and not resumed and can_evaluate_before_training(trainer):
        metrics["initial_eval_loss"] = trainer.evaluate()["eval_loss"]
    elif resumed and (initial := logged_value(out, "eval_loss", step=0)) is not None:
        metrics["initial_eval_loss"] = initial  # measured by the run that was interrupted
    result = job.train(trainer)
    metrics["train_loss"] = result.training_loss
    metrics["train_runtime"] = result.metrics.get("train_runtime")
    metrics["train_target_tokens"] = sum(sum(1 for t in ids if t != -100) for ids in train_ds["labels"])
    if eval_ds is not None:
        metrics["eval_loss"] = final_eval_loss(trainer)

    vocab = len(tokenizer) if added else None
    final = job.final_model(trainer, lambda: rebuild_model(cfg, vocab, lora), merge_lora=cfg.use_lora)
    if final is None:  # not rank 0
        return None
    job.save(final, tokenizer)
    return job.finish(
        tokenizer,
        metrics=metrics,
        data_fingerprint=fingerprint_rows(train_rows),
        template=cfg.template,
        base_model=cfg.model_name_or_path,
    )


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf sft") -> int:
    (cfg,) = parse_config([SFTStageConfig], argv, prog=prog)
    stage = run(cfg)
    end_of_run()
    if stage is not None:
        print(f"sft: finished {stage.path} (eval_loss {stage.metrics.get('eval_loss', float('nan')):.4f})")
    return 0
