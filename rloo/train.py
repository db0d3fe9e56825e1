"""RLOO recipe: chain check -> prompts -> policy and reward model -> TRL's RLOOTrainer -> save.

Why RLOO and not GRPO (both TRL 1.12 trainers share one generate-score-update loop): RLOO is the RLHF method of the
two. Its baseline for each of the k samples is the mean reward of the other k-1 (Ahmadian et al. 2024), an unbiased
REINFORCE estimator that keeps the reward model's scale, and its KL to the SFT policy is a penalty subtracted from
the sequence's reward, as in PPO-RLHF (PPO's `kl_coef` is RLOO's `beta`). GRPO divides advantages by the group's
reward std (tuned for 0/1 verifiable rewards: it inflates tiny reward-model differences between near-identical
samples), defaults to no KL term at all (`beta=0`), and puts the KL in the loss instead of the reward. With RLOO,
the comparison with PPO changes one thing: the learned value model becomes a leave-one-out baseline.
"""

from __future__ import annotations

from trl import RLOOTrainer

from rlhf import checkpoint
from rlhf.chain import check_chain
from rlhf.config import parse_config
from rlhf.distributed import end_of_run
from rlhf.errors import UserError, exit_on_user_error
from rlhf.judge_rewards import judge_task, refuse_credit_without_judge
from rlhf.lifecycle import StageRun
from rlhf.logs import read_log
from rlhf.models import load_causal_lm, load_tokenizer, sync_special_token_ids
from rlhf.rollout_prompts import prompt_template, stop_at_end_of_turn
from rlhf.templates import check_template
from rlhf.training import lora_config_for, resumed_progress
from rloo.config import RLOOStageConfig
from rloo.prompts import load_prompts, prompt_rows
from rloo.reward import RewardModelScore, reward_function

LAST_LOGGED = ("reward", "reward_std", "kl", "completions/mean_length", "completions/clipped_ratio")


def refuse_unresumable_checkpoints(cfg: RLOOStageConfig) -> None:
    """RLOOTrainer samples a generation batch once every steps_per_generation * num_iterations micro-batches and
    keeps it in memory; a resumed run samples afresh. So a checkpoint must fall where a new batch is sampled anyway,
    or a resumed run would differ from an uninterrupted one."""
    sample_every = cfg.steps_per_generation * cfg.num_iterations  # micro-batches
    if (
        cfg.save_strategy == "steps"
        and (int(cfg.save_steps) * cfg.gradient_accumulation_steps) % sample_every
    ):
        raise UserError(
            f"save_steps {cfg.save_steps} does not fall where RLOO samples a new batch (every {sample_every} "
            f"micro-batches = steps_per_generation x num_iterations, {cfg.gradient_accumulation_steps} per update): "
            "a resumed run could not continue exactly",
            cfg.config_path or "command line",
            "key 'save_steps'",
        )


def refuse_chat_template_kwargs(cfg: RLOOStageConfig) -> None:
    """The policy (SFT) and the reward model were trained on the chat template rendered without extra arguments,
    and the reward is scored on that rendering (rloo/reward.py): RLOOTrainer's own `chat_template_kwargs` would
    make its rollouts start from other text."""
    if cfg.chat_template_kwargs:
        raise UserError(
            "chat_template_kwargs is not supported: prompts are rendered as the SFT and reward stages rendered them",
            cfg.config_path or "command line",
            "key 'chat_template_kwargs'",
        )


def rebuild_model(cfg: RLOOStageConfig, sft, peft_config):
    """An unsharded copy of the policy as RLOOTrainer trained it, for gathered weights."""
    model = load_causal_lm(sft.path, trust_remote_code=cfg.trust_remote_code)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    return model


def run_metrics(out, trainer, result, first_step: int = 0) -> dict:
    """The last logged sampling statistics (reward before the KL penalty, KL, response length), and throughput:
    the whole run's episodes, and per second those of the steps this process trained (from `first_step`, where a
    resumed run started) over train_runtime, which covers only them."""
    last = next((r for r in reversed(read_log(out)) if "reward" in r), {})
    metrics = {k.replace("/", "_"): last[k] for k in LAST_LOGGED if k in last}
    per_step = trainer.args.generation_batch_size * trainer.args.world_size
    episodes = trainer.state.global_step * per_step
    seconds = result.metrics.get("train_runtime") or 0.0
    metrics.update(
        train_loss=result.training_loss,
        episodes=episodes,
        train_seconds=seconds,
        episodes_per_second=(trainer.state.global_step - first_step) * per_step / max(seconds, 1e-9),
    )
    return metrics


def run(cfg: RLOOStageConfig) -> checkpoint.Stage | None:
    """Train the RLOO stage into cfg.output_dir; the finished Stage on rank 0, None on other ranks."""
    # the same parents PPO accepts; under reward_judge the task's gold judge is the reward and no reward stage is read
    refuse_credit_without_judge(cfg)
    sft, rm = check_chain(cfg, reward=not cfg.reward_judge)
    job = StageRun("rloo", cfg, parents=[sft] if rm is None else [sft, rm])
    refuse_unresumable_checkpoints(cfg)
    # As in PPO: the policy's template, which the reward model must share.
    template = prompt_template(sft, rm, cfg)
    refuse_chat_template_kwargs(cfg)
    train_rows, _ = load_prompts(cfg)
    tokenizer = load_tokenizer(
        sft.path, padding_side="left"
    )  # RLOOTrainer generates from left-padded prompts
    check_template(template, tokenizer)
    stop_at_end_of_turn(tokenizer, template)  # RLOOTrainer stops rollouts at the tokenizer's EOS
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise UserError("RLOO needs a pad token distinct from EOS (rerun SFT, which adds one)", sft.path)
    train_ds, dropped = prompt_rows(train_rows, tokenizer, template, cfg.max_prompt_length)
    if len(train_ds) == 0:
        raise UserError(
            f"no prompt fits max_prompt_length={cfg.max_prompt_length}", cfg.prompts_path or "prompts"
        )

    # every prompt checked against the judge before any model loads
    task = (
        judge_task(cfg.reward_judge, train_rows, cfg.config_path or "command line", cfg.judge_credit)
        if cfg.reward_judge
        else None
    )

    # The policy starts as the SFT model; RLOOTrainer loads the reference from the same dir (with LoRA: the policy,
    # adapter disabled). The reward model (or the judge) scores as in PPO (rloo/reward.py).
    policy = load_causal_lm(sft.path, trust_remote_code=cfg.trust_remote_code)
    sync_special_token_ids(policy, tokenizer)
    score = reward_function(cfg, rm, task, train_rows, tokenizer, template)

    out = job.begin()
    peft_config = lora_config_for(cfg, "CAUSAL_LM")
    trainer = job.attach(
        RLOOTrainer(
            model=policy,
            reward_funcs=score,
            args=cfg,
            train_dataset=train_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=job.callbacks(),
        )
    )
    if isinstance(score, RewardModelScore):
        score.model.to(trainer.accelerator.device)
    # where a resumed run starts, for its throughput; read now: the run may rotate that checkpoint away
    first_step = resumed_progress(job.resume_point())["global_step"]
    result = job.train(trainer)
    final = job.final_model(trainer, lambda: rebuild_model(cfg, sft, peft_config), merge_lora=cfg.use_lora)
    if final is None:  # not rank 0
        return None

    metrics = run_metrics(out, trainer, result, first_step)
    metrics["dropped_prompts"] = dropped
    tokenizer.padding_side = "right"
    job.save(final, tokenizer)
    return job.finish(tokenizer, metrics=metrics, template=template, base_model=sft.base_model)


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf rloo") -> int:
    (cfg,) = parse_config([RLOOStageConfig], argv, prog=prog)
    stage = run(cfg)
    end_of_run()
    if stage is not None:
        m = stage.metrics
        print(
            f"rloo: finished {stage.path} (reward {m.get('reward', float('nan')):.3f}, "
            f"kl {m.get('kl', float('nan')):.3f}, {m['episodes_per_second']:.3g} episodes/s)"
        )
    return 0
