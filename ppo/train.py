"""Stage 3 recipe: PPO through TRL. Chain check -> prompts -> policy/reference/value/reward -> PPOTrainer -> save."""

from __future__ import annotations

import time

import torch

from ppo.config import PPOStageConfig, minibatch_problem
from ppo.judge_reward import judge_for_prompts
from ppo.kl_stop import KLStop, KLStopCallback
from ppo.metrics import run_metrics
from ppo.models import reward_and_value_models, save_value_model, store_adapter_base
from ppo.resumable import ResumablePPOTrainer, check_resumable, resume_files
from ppo.value_warmup import ValueWarmupCallback
from rlhf import checkpoint
from rlhf.chain import check_chain
from rlhf.config import parse_config
from rlhf.distributed import deepspeed_launch, end_of_run, main_print, sharded_launch, world_size
from rlhf.errors import UserError, exit_on_user_error
from rlhf.judge_rewards import refuse_credit_without_judge
from rlhf.lifecycle import StageRun
from rlhf.models import load_causal_lm, load_tokenizer, sync_special_token_ids
from rlhf.rollout_prompts import load_prompts, prompt_template, stop_at_end_of_turn, tokenize_prompts
from rlhf.templates import check_template
from rlhf.training import lora_config_for, resumed_progress
from rlhf.trl_compat import check_trl_version


def refuse_sharded_launch(cfg: PPOStageConfig) -> None:
    if sharding := sharded_launch(cfg):
        raise UserError(
            f"PPO runs single-process, DDP or DeepSpeed ZeRO-1/2, not {sharding}: this stage does not gather a "
            "sharded policy and value model to save them (use LoRA to fit memory instead)",
            cfg.config_path or "command line",
        )


def refuse_settings_that_would_not_hold(cfg: PPOStageConfig) -> None:
    """Settings TRL 1.12's PPO loop would silently run otherwise than asked, refused before anything is read."""
    where = cfg.config_path or "config"
    if problem := minibatch_problem(cfg):
        raise UserError(problem, where, "key 'num_mini_batches'")
    if cfg.value_warmup and (getattr(cfg, "hf_deepspeed_config", None) is not None or deepspeed_launch()):
        raise UserError(
            "value_warmup holds the policy still by dropping its gradients before the optimizer step; DeepSpeed "
            "steps its own flattened copies of them, so it would not hold: run without DeepSpeed or value_warmup: 0",
            where,
            "key 'value_warmup'",
        )


def run(cfg: PPOStageConfig) -> checkpoint.Stage | None:
    """Train the PPO stage into cfg.output_dir; the finished Stage on rank 0, None on other ranks."""
    check_trl_version()  # the trainer overrides TRL 1.12 internals (rlhf/trl_compat.py)
    refuse_settings_that_would_not_hold(cfg)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    # reward_judge: the task's gold judge rewards PPO (ppo/judge_reward.py); no reward stage is read
    refuse_credit_without_judge(cfg)
    sft, rm = check_chain(cfg, reward=not cfg.reward_judge)
    job = StageRun("ppo", cfg, parents=[sft] if rm is None else [sft, rm])
    refuse_sharded_launch(cfg)
    template = prompt_template(sft, rm, cfg)
    train_rows, eval_rows = load_prompts(cfg)
    tokenizer = load_tokenizer(sft.path, padding_side="left")  # TRL's rollouts need left padding
    check_template(template, tokenizer)
    stop_at_end_of_turn(tokenizer, template)
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise UserError("PPO needs a pad token distinct from EOS (rerun SFT, which adds one)", sft.path)
    train_ds, dropped = tokenize_prompts(train_rows, tokenizer, template, cfg.max_prompt_length)
    eval_ds, _ = tokenize_prompts(eval_rows, tokenizer, template, cfg.max_prompt_length)
    if len(train_ds) == 0:
        raise UserError(
            f"no prompt fits max_prompt_length={cfg.max_prompt_length}", cfg.prompts_path or "prompts"
        )
    # every prompt checked before any model loads
    judge = judge_for_prompts(cfg, train_rows + eval_rows, template, tokenizer) if cfg.reward_judge else None
    # A killed run continues from its newest complete checkpoint (resume: auto), refused here, before any model
    # loads, if it was made with other settings.
    resume_from = job.resume_point(required=resume_files(world_size()))
    check_resumable(resume_from, cfg, len(train_ds), world_size())
    # where a resumed run starts, for its throughput; read now: the run may rotate that checkpoint away
    first_episode = resumed_progress(resume_from)["episode"]

    # Policy and reference start as the SFT model (with LoRA the reference is the policy, adapter disabled);
    # reward and value models both start as the reward model (Huang et al.'s N+ details); under reward_judge the
    # reward is the judge and the value model starts as the policy.
    policy = load_causal_lm(sft.path, trust_remote_code=cfg.trust_remote_code)
    ref_policy = None if cfg.use_lora else load_causal_lm(sft.path, trust_remote_code=cfg.trust_remote_code)
    for m in (policy, ref_policy):
        if m is not None:
            sync_special_token_ids(m, tokenizer)
    reward_model, value_model = reward_and_value_models(cfg, sft.path, rm, tokenizer, judge)

    out = job.begin()
    if not len(eval_ds):
        cfg.num_sample_generations = 0
    policy_lora = lora_config_for(cfg, "CAUSAL_LM")
    trainer = job.attach(
        ResumablePPOTrainer(
            args=cfg,
            processing_class=tokenizer,
            model=policy,
            ref_model=ref_policy,
            reward_model=reward_model,
            value_model=value_model,
            train_dataset=train_ds,
            eval_dataset=eval_ds if len(eval_ds) else None,
            peft_config=policy_lora,
            callbacks=job.callbacks(KLStopCallback(cfg.kl_stop), ValueWarmupCallback(cfg.value_warmup)),
        )
    )
    t0, stopped_early = time.time(), None
    try:
        job.train(trainer, loss_accumulators=False)
    except KLStop as e:
        stopped_early = str(e)
        main_print(f"ppo: stopped early: {stopped_early}")
    train_seconds = time.time() - t0
    trained = job.final_model(trainer)  # TRL's policy + value wrapper
    if trained is None:  # not rank 0
        return None

    metrics = run_metrics(out, trainer, train_seconds, first_episode)
    metrics.update(dropped_prompts=dropped, stopped_early=stopped_early)
    tokenizer.padding_side = "right"
    adapter = cfg.use_lora and not cfg.merge
    policy_out = trained.policy.merge_and_unload() if cfg.use_lora and cfg.merge else trained.policy
    job.save(policy_out, tokenizer)
    if adapter:
        store_adapter_base(out, sft.path)
    save_value_model(trained.value_model, out / "value_model", merge_lora=cfg.use_lora)
    return job.finish(
        tokenizer,
        metrics=metrics,
        template=template,
        base_model=sft.base_model,
        extra={"adapter": adapter},
    )


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf ppo") -> int:
    (cfg,) = parse_config([PPOStageConfig], argv, prog=prog)
    stage = run(cfg)
    end_of_run()
    if stage is not None:
        m = stage.metrics
        print(
            f"ppo: finished {stage.path} (score {m.get('objective_scores', float('nan')):.3f}, "
            f"kl {m.get('objective_kl', float('nan')):.3f}, {m['episodes_per_second']:.3g} episodes/s)"
        )
    return 0
