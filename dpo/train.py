"""DPO recipe: SFT parent (checked) -> preference pairs -> policy and reference -> TRL's DPOTrainer -> the implicit
reward read on the held-out pairs -> save."""

from __future__ import annotations

import datasets
from trl import DPOTrainer

from dpo.config import DPOStageConfig
from dpo.data import fingerprint_pairs, preference_rows
from dpo.implicit_reward import implicit_rewards
from rlhf import checkpoint
from rlhf.config import parse_config
from rlhf.distributed import end_of_run, main_print
from rlhf.errors import UserError, exit_on_user_error
from rlhf.lifecycle import StageRun
from rlhf.models import load_causal_lm, load_tokenizer, sync_special_token_ids
from rlhf.preferences import stage_pairs, write_held_out
from rlhf.tasks.agreement import ranking_metrics
from rlhf.templates import check_template
from rlhf.training import lora_config_for


def rebuild_model(cfg: DPOStageConfig, parent, peft_config):
    """An unsharded copy of the policy as DPOTrainer trained it, for gathered weights."""
    model = load_causal_lm(parent.path, trust_remote_code=cfg.trust_remote_code)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    return model


def run(cfg: DPOStageConfig) -> checkpoint.Stage | None:
    """Train the DPO stage into cfg.output_dir; the finished Stage on rank 0, None on other ranks."""
    parent = checkpoint.require_parent(cfg.sft_path, "sft", role="policy")  # or any causal LM (external)
    job = StageRun("dpo", cfg, parents=[parent])
    pairs, eval_pairs, left_out = stage_pairs(cfg)

    # Policy and reference both start as the SFT policy, with its tokenizer and prompt template.
    tokenizer = load_tokenizer(parent.path)
    check_template(parent.template, tokenizer)
    train_ds, dropped = preference_rows(pairs, tokenizer, parent.template, cfg.max_length)
    eval_ds, eval_dropped = preference_rows(eval_pairs, tokenizer, parent.template, cfg.max_length)
    if dropped or eval_dropped:
        main_print(
            f"dpo: dropped {dropped} train and {eval_dropped} eval pairs longer than max_length={cfg.max_length}"
        )
    if len(train_ds) == 0:
        raise UserError(f"no pair fits max_length={cfg.max_length}", cfg.pairs_path, "key 'max_length'")
    if len(eval_ds) == 0:
        cfg.eval_strategy = "no"
    policy = load_causal_lm(parent.path, trust_remote_code=cfg.trust_remote_code)
    # With LoRA the reference is the policy with its adapter disabled: no second copy of the weights.
    reference = None if cfg.use_lora else load_causal_lm(parent.path, trust_remote_code=cfg.trust_remote_code)
    for m in (policy, reference):
        if m is not None:
            sync_special_token_ids(m, tokenizer)

    job.begin()
    if cfg.quiet:  # DPOTrainer tokenizes the rows with datasets.map, which draws its own progress bars
        datasets.disable_progress_bars()
    peft_config = lora_config_for(cfg, "CAUSAL_LM")
    trainer = job.attach(
        DPOTrainer(
            model=policy,
            ref_model=reference,
            args=cfg,
            train_dataset=train_ds,
            eval_dataset=eval_ds if len(eval_ds) else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=job.callbacks(),
        )
    )
    result = job.train(trainer)
    evaluated = trainer.evaluate() if len(eval_ds) else {}  # every rank: the eval loop gathers across them
    final = job.final_model(trainer, lambda: rebuild_model(cfg, parent, peft_config), merge_lora=cfg.use_lora)
    if final is None:  # not rank 0
        return None

    metrics: dict = {
        "train_pairs": len(train_ds),
        "eval_pairs": len(eval_ds),
        "dropped_too_long": dropped + eval_dropped,
        "dropped_held_out_prompts": left_out,
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
    }
    # TRL's names (eval_rewards/accuracies: the held-out share of pairs whose implicit reward ranks chosen first).
    metrics.update(
        {
            k.replace("/", "_"): v
            for k, v in evaluated.items()
            if k.startswith(("eval_loss", "eval_rewards", "eval_logps"))
        }
    )
    if eval_pairs:
        # The implicit reward's ranking of the held-out pairs (the reward stage's, same split), each whole response
        # scored as the reward stage scores it: eval_accuracy and gold_agreement mean what they mean in a reward
        # stage's manifest. (TRL's eval_rewards_accuracies above is a mean over its eval batches, of the pairs
        # that fit max_length.) The reference is reloaded: under LoRA it was the policy with its adapter off. At
        # most 8 rows a batch: each holds a full-vocabulary log-softmax (SmolLM2: 49k x length floats).
        reference = load_causal_lm(parent.path, trust_remote_code=cfg.trust_remote_code)
        chosen, rejected = implicit_rewards(final, reference, tokenizer, parent.template, eval_pairs, cfg.beta,
                                            batch_size=min(8, cfg.per_device_eval_batch_size))  # fmt: skip
        metrics.update(ranking_metrics(eval_pairs, chosen, rejected))
    write_held_out(job.out, eval_pairs)  # other runs can be scored on the same pairs
    job.save(final, tokenizer)
    return job.finish(
        tokenizer,
        metrics=metrics,
        data_fingerprint=fingerprint_pairs(pairs),
        template=parent.template,
        base_model=parent.base_model,
    )


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf dpo") -> int:
    (cfg,) = parse_config([DPOStageConfig], argv, prog=prog)
    stage = run(cfg)
    end_of_run()
    if stage is not None:
        m = stage.metrics
        acc = m.get("eval_rewards_accuracies")
        shown = (
            f"held-out preference accuracy {acc:.3f}"
            if acc is not None
            else f"train loss {m['train_loss']:.4f}"
        )
        if "gold_agreement" in m:
            shown += f", implicit reward's gold agreement {m['gold_agreement']:.3f}"
        print(f"dpo: finished {stage.path} ({shown})")
    return 0
