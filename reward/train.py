"""Stage 2 recipe: reward model. SFT parent (checked) -> preference pairs -> RewardTrainer -> held-out metrics."""

from __future__ import annotations

from trl import RewardTrainer

from reward.config import RewardStageConfig
from reward.encoding import tokenize_pairs
from reward.statistics import reward_statistics
from rlhf import checkpoint
from rlhf.config import parse_config
from rlhf.distributed import end_of_run, main_print
from rlhf.errors import UserError, exit_on_user_error
from rlhf.evaluation.scoring import RewardScorer
from rlhf.io import sha256_text
from rlhf.label_aggregation import aggregate
from rlhf.lifecycle import StageRun
from rlhf.models import load_scalar_head_model, load_tokenizer
from rlhf.preferences import stage_pairs, write_held_out
from rlhf.tasks.agreement import ranking_metrics
from rlhf.templates import check_template, stage_template
from rlhf.training import lora_config_for


def rebuild_model(cfg: RewardStageConfig, parent, tokenizer, peft_config):
    """An unsharded copy of the model as RewardTrainer trained it, for gathered weights."""
    model = load_scalar_head_model(parent.path, tokenizer, trust_remote_code=cfg.trust_remote_code)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    return model


def run(cfg: RewardStageConfig) -> checkpoint.Stage | None:
    """Train the reward stage into cfg.output_dir; the finished Stage on rank 0, None on other ranks."""
    parent = checkpoint.require_parent(cfg.sft_path, "sft", role="policy")  # or any causal LM (external)
    job = StageRun("reward", cfg, parents=[parent])
    pairs, eval_pairs, left_out = stage_pairs(cfg)
    # Training pairs only: the held-out pairs keep their labels, so accuracies stay comparable across settings.
    pairs, aggregation = aggregate(pairs, cfg.label_aggregation)

    # The SFT tokenizer and backbone, with a scalar head: token ids mean what the policy means. The prompt
    # template is the parent's (a plain model's: `template`, default alpaca), checked before any weights load.
    template = stage_template(parent, cfg.template, cfg.config_path or "command line")
    tokenizer = load_tokenizer(parent.path)
    check_template(template, tokenizer)
    model = load_scalar_head_model(parent.path, tokenizer, trust_remote_code=cfg.trust_remote_code)
    train_ds, dropped = tokenize_pairs(pairs, tokenizer, template, cfg.max_length)
    eval_ds, eval_dropped = tokenize_pairs(eval_pairs, tokenizer, template, cfg.max_length)
    if dropped or eval_dropped:
        main_print(
            f"reward: dropped {dropped} train and {eval_dropped} eval pairs longer than max_length={cfg.max_length}"
        )
    if len(train_ds) == 0:
        raise UserError(f"no pair fits max_length={cfg.max_length}", cfg.pairs_path, "key 'max_length'")
    if len(eval_ds) == 0:
        cfg.eval_strategy = "no"

    # Bradley-Terry loss on (chosen, rejected) scores: TRL's RewardTrainer.
    job.begin()
    peft_config = lora_config_for(cfg, "SEQ_CLS")
    trainer = job.attach(
        RewardTrainer(
            model=model,
            args=cfg,
            train_dataset=train_ds,
            eval_dataset=eval_ds if len(eval_ds) else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=job.callbacks(),
        )
    )
    result = job.train(trainer)
    rebuild = lambda: rebuild_model(cfg, parent, tokenizer, peft_config)  # noqa: E731
    final = job.final_model(trainer, rebuild, merge_lora=cfg.use_lora)
    if final is None:  # not rank 0
        return None

    scorer = RewardScorer(final, tokenizer, template, batch_size=cfg.per_device_eval_batch_size)
    metrics: dict = {
        "train_pairs": len(train_ds),
        **{f"label_aggregation_{k}": v for k, v in aggregation.items()},
        "eval_pairs": len(eval_ds),
        "dropped_too_long": dropped + eval_dropped,
        "dropped_held_out_prompts": left_out,
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
    }
    # One scoring pass over the held-out pairs (or some training pairs when there are none) serves the accuracy,
    # the gold agreement and the score statistics PPO and RLOO normalise with, each prompt rendered as the model
    # reads it (a conversation with its history).
    scored = eval_pairs or pairs[:256]
    chosen, rejected = scorer.pair_scores(scored)
    if len(eval_ds):
        metrics.update(ranking_metrics(scored, chosen, rejected))
    metrics.update(reward_statistics(chosen + rejected))

    final.config.pad_token_id = tokenizer.pad_token_id
    write_held_out(job.out, eval_pairs)  # other runs can be scored on the same pairs
    job.save(final, tokenizer)
    data_fp = sha256_text("".join(p["instruction"] + p["input"] + p["chosen"] + p["rejected"] for p in pairs))
    return job.finish(
        tokenizer,
        metrics=metrics,
        data_fingerprint=data_fp,
        template=template,
        base_model=parent.base_model,
    )


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf reward") -> int:
    (cfg,) = parse_config([RewardStageConfig], argv, prog=prog)
    stage = run(cfg)
    end_of_run()
    if stage is not None:
        m = stage.metrics
        extra = f", gold agreement {m['gold_agreement']:.3f}" if "gold_agreement" in m else ""
        print(
            f"reward: finished {stage.path} (eval accuracy {m.get('eval_accuracy', float('nan')):.3f}{extra})"
        )
    return 0
