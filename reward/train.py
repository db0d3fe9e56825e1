"""Stage 2 recipe: reward model. Config -> SFT parent (checked) -> pairs -> RewardTrainer -> save -> manifest."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from datasets import Dataset
from transformers import set_seed
from trl import RewardTrainer

from reward.config import RewardStageConfig
from reward.data import load_preferences
from rlhf import checkpoint
from rlhf.config import config_to_dict, parse_config
from rlhf.distributed import end_of_run, final_model, gather_state_dict, main_print
from rlhf.errors import UserError, exit_on_user_error
from rlhf.io import sha256_text
from rlhf.models import load_scalar_head_model, load_tokenizer
from rlhf.paths import check_stage_paths
from rlhf.resume_metrics import train_reporting_whole_run
from rlhf.scoring import RewardScorer, encode_example
from rlhf.templates import format_prompt
from rlhf.training import (
    JsonlLogger,
    lora_config,
    quiet_trainer,
    remove_checkpoints,
    resolve_resume,
    start_log,
)


def encode_pair(pair: dict, tokenizer, template: str) -> tuple[list[int], list[int]]:
    """The chosen and rejected token ids of one preference pair, each with its prompt."""
    prompt = format_prompt(pair["instruction"], pair["input"], template)
    return encode_example(tokenizer, prompt, pair["chosen"]), encode_example(
        tokenizer, prompt, pair["rejected"]
    )


def fits(chosen: list[int], rejected: list[int], max_length: int | None) -> bool:
    """The stage's length rule: a pair is kept only if both sides fit max_length."""
    return max_length is None or max(len(chosen), len(rejected)) <= max_length


def tokenize_pairs(
    pairs: list[dict], tokenizer, template: str, max_length: int | None
) -> tuple[Dataset, int]:
    """chosen_ids / rejected_ids as RewardTrainer takes them; pairs over max_length are dropped *and counted*
    (RewardTrainer would drop them silently)."""
    chosen, rejected, margins, dropped = [], [], [], 0
    for p in pairs:
        c, r = encode_pair(p, tokenizer, template)
        if not fits(c, r, max_length):
            dropped += 1
            continue
        chosen.append(c)
        rejected.append(r)
        margins.append(p.get("margin"))
    columns = {"chosen_ids": chosen, "rejected_ids": rejected}
    if chosen and all(m is not None for m in margins):  # Llama-2-style margin loss when every pair has one
        columns["margin"] = [float(m) for m in margins]
    return Dataset.from_dict(columns), dropped


def gold_agreement(scorer: RewardScorer, pairs: list[dict]) -> tuple[float, int] | None:
    """Held-out accuracy against the demo tasks' gold judge (pairs whose gold scores tie are left out)."""
    from rlhf.tasks import judge, parse_task

    keep = []
    for p in pairs:
        task = parse_task(p["instruction"], p["input"])
        if task is None:
            return None
        gc, gr = judge(task, p["chosen"]), judge(task, p["rejected"])
        if gc != gr:
            keep.append(p if gc > gr else {**p, "chosen": p["rejected"], "rejected": p["chosen"]})
    return (scorer.pairwise_accuracy(keep), len(keep)) if keep else None


def rebuild_model(cfg: RewardStageConfig, parent: checkpoint.Stage, tokenizer, peft_config):
    """An unsharded copy of the model as RewardTrainer trained it, for gathered weights."""
    model = load_scalar_head_model(parent.path, tokenizer, trust_remote_code=cfg.trust_remote_code)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    return model


def main(cfg: RewardStageConfig) -> checkpoint.Stage:
    started = time.time()
    set_seed(cfg.seed)
    check_stage_paths("reward", cfg)  # inputs are never written; --overwrite replaces a reward stage only
    parent = checkpoint.require(cfg.sft_path, kind="sft")
    checkpoint.check_output_dir(cfg.output_dir, overwrite=cfg.overwrite)  # refuse before minutes of loading
    if not cfg.pairs_path:
        raise UserError("pairs_path is required", cfg.config_path or "command line", "key 'pairs_path'")
    pairs = load_preferences(cfg.pairs_path)
    random.Random(cfg.seed).shuffle(pairs)
    if cfg.eval_pairs_path:
        eval_pairs = load_preferences(cfg.eval_pairs_path)
    else:
        n_eval = int(round(len(pairs) * cfg.eval_fraction))
        pairs, eval_pairs = pairs[n_eval:], pairs[:n_eval]
    if cfg.max_pairs:
        pairs = pairs[: cfg.max_pairs]

    tokenizer = load_tokenizer(parent.path)  # the SFT tokenizer, so token ids mean what the policy means
    model = load_scalar_head_model(parent.path, tokenizer, trust_remote_code=cfg.trust_remote_code)
    train_ds, dropped = tokenize_pairs(pairs, tokenizer, parent.template, cfg.max_length)
    eval_ds, eval_dropped = tokenize_pairs(eval_pairs, tokenizer, parent.template, cfg.max_length)
    if dropped or eval_dropped:
        main_print(
            f"reward: dropped {dropped} train and {eval_dropped} eval pairs longer than max_length={cfg.max_length}"
        )
    if len(train_ds) == 0:
        raise UserError(f"no pair fits max_length={cfg.max_length}", cfg.pairs_path, "key 'max_length'")
    if len(eval_ds) == 0:
        cfg.eval_strategy = "no"

    out = checkpoint.begin(cfg.output_dir, overwrite=cfg.overwrite)
    cfg.disable_tqdm = cfg.quiet or cfg.disable_tqdm
    peft_config = None
    if cfg.use_lora:
        peft_config = lora_config(
            "SEQ_CLS", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules
        )
    trainer = RewardTrainer(
        model=model,
        args=cfg,
        train_dataset=train_ds,
        eval_dataset=eval_ds if len(eval_ds) else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[JsonlLogger(out)],
    )
    if cfg.quiet:
        quiet_trainer(trainer)
    resume_from = resolve_resume(cfg.resume, out)
    if trainer.is_world_process_zero():
        start_log(out, resume_from)
    result = train_reporting_whole_run(trainer, resume_from)  # train_loss etc. of the whole run, if resumed
    # Only rank 0 scores and writes the stage. A sharded model (ZeRO-3, FSDP) is gathered first, by every rank.
    gathered = gather_state_dict(trainer)
    if not trainer.is_world_process_zero():
        return None

    final = final_model(
        trainer, gathered, lambda: rebuild_model(cfg, parent, tokenizer, peft_config), cfg.use_lora
    )
    scorer = RewardScorer(final, tokenizer, parent.template, batch_size=cfg.per_device_eval_batch_size)
    metrics: dict = {
        "train_pairs": len(train_ds),
        "eval_pairs": len(eval_ds),
        "dropped_too_long": dropped + eval_dropped,
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
    }
    if len(eval_ds):
        metrics["eval_accuracy"] = scorer.pairwise_accuracy(eval_pairs)
        gold = gold_agreement(scorer, eval_pairs)
        if gold is not None:
            metrics["gold_agreement"], metrics["gold_pairs"] = gold
    # Reward statistics on held-out responses: PPO normalises its rewards with these.
    ref = eval_pairs or pairs[:256]
    scores = scorer.score(
        [(p["instruction"], p["input"]) for p in ref] * 2,
        [p["chosen"] for p in ref] + [p["rejected"] for p in ref],
    )
    metrics["reward_mean"] = statistics.fmean(scores)
    metrics["reward_std"] = statistics.pstdev(scores) if len(scores) > 1 else 1.0

    final.config.pad_token_id = tokenizer.pad_token_id
    final.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not cfg.keep_checkpoints:
        remove_checkpoints(out)
    data_fp = sha256_text("".join(p["instruction"] + p["input"] + p["chosen"] + p["rejected"] for p in pairs))
    return checkpoint.finish(
        out,
        "reward",
        config=config_to_dict(cfg),
        tokenizer=tokenizer,
        parents=[parent],
        metrics=metrics,
        data_fingerprint=data_fp,
        started_at=started,
        template=parent.template,
        base_model=parent.manifest.get("base_model"),
        extra={"resumed_from": resume_from and Path(resume_from).name},
    )


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf reward") -> int:
    (cfg,) = parse_config([RewardStageConfig], argv, prog=prog)
    stage = main(cfg)
    end_of_run()
    if stage is not None:
        m = stage.metrics
        extra = f", gold agreement {m['gold_agreement']:.3f}" if "gold_agreement" in m else ""
        print(
            f"reward: finished {stage.path} (eval accuracy {m.get('eval_accuracy', float('nan')):.3f}{extra})"
        )
    return 0
