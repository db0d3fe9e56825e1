"""Stage 3 recipe: PPO through TRL. Chain check -> prompts -> policy/ref/reward/value -> PPOTrainer -> save."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from datasets import Dataset
from torch import nn
from transformers import TrainerCallback, set_seed

from ppo.config import PPOStageConfig
from ppo.resumable import ResumablePPOTrainer, check_resumable, resume_files
from rlhf import checkpoint
from rlhf.config import config_to_dict, parse_config
from rlhf.data import load_instructions
from rlhf.distributed import end_of_run, is_main_process, main_print, sharded_launch, world_size
from rlhf.errors import UserError, exit_on_user_error
from rlhf.io import atomic_write_json
from rlhf.models import load_causal_lm, load_scalar_head_model, load_tokenizer, sync_special_token_ids
from rlhf.paths import check_stage_paths
from rlhf.templates import format_prompt
from rlhf.training import (
    LOG_FILE,
    JsonlLogger,
    lora_config,
    quiet_trainer,
    remove_checkpoints,
    resolve_resume,
    start_log,
)


def check_chain(cfg: PPOStageConfig) -> tuple[checkpoint.Stage, checkpoint.Stage]:
    """Before any model loads: SFT and reward dirs are finished stages of the right kinds, and the reward model
    was trained on this SFT checkpoint (or at least with the identical tokenizer)."""
    sft = checkpoint.require(cfg.sft_path, kind="sft")
    rm = checkpoint.require(cfg.reward_path, kind="reward")
    if sft.sha256 not in {p.get("manifest_sha256") for p in rm.manifest.get("parents", [])}:
        checkpoint.require_same_tokenizer(sft, rm)
    return sft, rm


def load_prompts(cfg: PPOStageConfig) -> tuple[list[dict], list[dict]]:
    if cfg.prompts_path:
        rows = load_instructions(cfg.prompts_path, require_output=False)
        n_eval = min(cfg.num_eval_prompts, len(rows) // 10)
        return rows[n_eval:], rows[:n_eval]
    if cfg.demo_prompts > 0:
        from rlhf.tasks import make_tasks

        kinds = [k.strip() for k in cfg.demo_kinds.split(",") if k.strip()]
        train = [t.to_row() for t in make_tasks(cfg.demo_prompts, cfg.seed + 101, kinds, split="train")]
        evals = [t.to_row() for t in make_tasks(cfg.num_eval_prompts, cfg.seed + 202, kinds, split="eval")]
        return train, evals
    raise UserError(
        "set prompts_path (Alpaca json/jsonl) or demo_prompts > 0",
        cfg.config_path or "command line",
        "key 'prompts_path'",
    )


def tokenize_prompts(rows: list[dict], tokenizer, template: str, max_len: int) -> tuple[Dataset, int]:
    texts = [format_prompt(r["instruction"], r.get("input", ""), template) for r in rows]
    ids = tokenizer(texts)["input_ids"] if texts else []  # specials exactly as SFT's preprocess saw them
    kept = [x for x in ids if len(x) <= max_len]
    return Dataset.from_dict({"input_ids": kept}), len(ids) - len(kept)


class NormalizedScore(nn.Module):
    """Reward head whose output is (r - mean) / std, with the reward stage's held-out statistics."""

    def __init__(self, score: nn.Module, mean: float, std: float):
        super().__init__()
        self.inner, self.mean, self.std = score, float(mean), max(float(std), 1e-6)

    def forward(self, hidden):
        return (self.inner(hidden) - self.mean) / self.std


class KLStop(Exception):
    pass


class KLStopCallback(TrainerCallback):
    """TRL's PPO loop ignores control.should_training_stop, so stop by raising after the update that crossed the
    bound has been applied and logged."""

    def __init__(self, bound: float | None):
        self.bound = bound

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bound is not None and logs and logs.get("objective/kl", 0.0) > self.bound:
            raise KLStop(f"objective/kl {logs['objective/kl']:.3f} > kl_stop {self.bound}")


def share_reward_backbone(value_model, reward_model) -> None:
    """LoRA mode: the value model's backbone stays frozen (only its adapter and scalar head train) and holds the same
    weights as the reward model's (both load the reward dir), so point it at the reward model's weight tensors
    instead of keeping a second copy: 4 bytes per parameter less (bench/ppo_overhead.py --model smollm2).

    Parameters are shared, modules are not: the adapter added next wraps the value model's layers only, so the
    reward model still scores without it. Both stay frozen (the reward model runs under no_grad; peft freezes the
    value backbone), so nothing ever writes the shared tensors during training."""
    prefix = value_model.base_model_prefix
    value_backbone, reward_backbone = getattr(value_model, prefix), getattr(reward_model, prefix)
    reward_params = dict(reward_backbone.named_parameters(remove_duplicate=False))
    for module_name, module in value_backbone.named_modules():
        for name, param in list(module.named_parameters(recurse=False)):
            shared = reward_params[f"{module_name}.{name}" if module_name else name]
            if shared.shape != param.shape or shared.dtype != param.dtype:
                raise RuntimeError(f"value and reward backbones differ at {module_name}.{name}")
            module._parameters[name] = shared


def unshare_parameters(module: nn.Module) -> None:
    """Give `module` its own copy of every weight (undoes share_reward_backbone before anything writes them);
    weights tied inside `module` stay tied."""
    copies: dict[int, nn.Parameter] = {}
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            if id(param) not in copies:
                copies[id(param)] = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
            sub._parameters[name] = copies[id(param)]


def add_lora_to_value_backbone(value_model, cfg: PPOStageConfig):
    """LoRA on the value model's backbone (the score head stays fully trainable). TRL calls the backbone via
    `getattr(value_model, base_model_prefix)`, so the peft wrapper goes exactly there."""
    from peft import get_peft_model

    prefix = value_model.base_model_prefix
    backbone = get_peft_model(
        getattr(value_model, prefix),
        lora_config(None, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules),
    )
    setattr(value_model, prefix, backbone)
    for p in value_model.score.parameters():
        p.requires_grad_(True)
    return value_model


def expose_policy_through_ddp(trainer: ResumablePPOTrainer) -> None:
    """LoRA under DDP: TRL 1.12 computes the reference log-probs through `self.model.policy` (with the adapter
    disabled), but once accelerate has wrapped the policy+value model in DistributedDataParallel that attribute is
    gone ("'DistributedDataParallel' object has no attribute 'policy'"). Give the wrapper a plain attribute pointing
    at the inner policy: that pass runs under no_grad, so it needs none of DDP's gradient hooks."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(trainer.model, DistributedDataParallel) and not hasattr(trainer.model, "policy"):
        object.__setattr__(trainer.model, "policy", trainer.model.module.policy)  # not a registered submodule


def main(cfg: PPOStageConfig) -> checkpoint.Stage:
    started = time.time()
    set_seed(cfg.seed)
    check_stage_paths("ppo", cfg)  # inputs are never written; --overwrite replaces a ppo stage only
    sft, rm = check_chain(cfg)
    checkpoint.check_output_dir(cfg.output_dir, overwrite=cfg.overwrite)  # refuse before minutes of loading
    if sharding := sharded_launch(cfg):
        raise UserError(
            f"PPO runs single-process, DDP or DeepSpeed ZeRO-1/2, not {sharding}: this stage does not gather a "
            "sharded policy and value model to save them (use LoRA to fit memory instead)",
            cfg.config_path or "command line",
        )
    train_rows, eval_rows = load_prompts(cfg)

    tokenizer = load_tokenizer(sft.path, padding_side="left")  # TRL's rollouts need left padding
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise UserError("PPO needs a pad token distinct from EOS (rerun SFT, which adds one)", sft.path)
    train_ds, dropped = tokenize_prompts(train_rows, tokenizer, sft.template, cfg.max_prompt_length)
    eval_ds, _ = tokenize_prompts(eval_rows, tokenizer, sft.template, cfg.max_prompt_length)
    if len(train_ds) == 0:
        raise UserError(
            f"no prompt fits max_prompt_length={cfg.max_prompt_length}", cfg.prompts_path or "prompts"
        )

    # A killed run continues from its newest complete checkpoint (resume: auto), refused here, before any model
    # loads, if it was made with other settings. Overwriting a finished stage starts over (begin drops its ones).
    finished = checkpoint.is_finished(cfg.output_dir)
    required = resume_files(world_size())
    resume_from = None if finished else resolve_resume(cfg.resume, cfg.output_dir, required=required)
    check_resumable(resume_from, cfg, len(train_ds), world_size())

    policy = load_causal_lm(sft.path, trust_remote_code=cfg.trust_remote_code)
    ref_policy = None if cfg.use_lora else load_causal_lm(sft.path, trust_remote_code=cfg.trust_remote_code)
    for m in (policy, ref_policy):
        if m is not None:
            sync_special_token_ids(m, tokenizer)
    reward_model = load_scalar_head_model(rm.path, tokenizer, trust_remote_code=cfg.trust_remote_code)
    if cfg.normalize_reward:
        mean, std = rm.metrics.get("reward_mean", 0.0), rm.metrics.get("reward_std", 1.0)
        reward_model.score = NormalizedScore(reward_model.score, mean, std)
    value_model = load_scalar_head_model(rm.path, tokenizer, trust_remote_code=cfg.trust_remote_code)
    if cfg.use_lora:
        share_reward_backbone(value_model, reward_model)
        value_model = add_lora_to_value_backbone(value_model, cfg)

    out = checkpoint.begin(cfg.output_dir, overwrite=cfg.overwrite)
    if is_main_process():
        start_log(out, resume_from)
    cfg.disable_tqdm = cfg.quiet or cfg.disable_tqdm
    if not len(eval_ds):
        cfg.num_sample_generations = 0
    trainer = ResumablePPOTrainer(
        args=cfg,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_policy,
        reward_model=reward_model,
        value_model=value_model,
        train_dataset=train_ds,
        eval_dataset=eval_ds if len(eval_ds) else None,
        peft_config=lora_config(
            "CAUSAL_LM", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules
        )
        if cfg.use_lora
        else None,
        callbacks=[JsonlLogger(out), KLStopCallback(cfg.kl_stop)],
    )
    if cfg.quiet:
        quiet_trainer(trainer)
    expose_policy_through_ddp(trainer)
    t0 = time.time()
    stopped_early = None
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except KLStop as e:
        stopped_early = str(e)
        main_print(f"ppo: stopped early: {stopped_early}")
    train_seconds = time.time() - t0
    if not trainer.accelerator.is_main_process:
        return None

    logs = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines() if line.strip()]
    last = next((r for r in reversed(logs) if "objective/scores" in r), {})
    metrics = {
        k.replace("/", "_"): last[k]
        for k in (
            "objective/scores",
            "objective/kl",
            "objective/rlhf_reward",
            "objective/entropy",
            "loss/value_avg",
        )
        if k in last
    }
    episodes = int(last.get("episode", trainer.state.episode))
    metrics.update(
        episodes=episodes,
        train_seconds=train_seconds,
        episodes_per_second=episodes / max(train_seconds, 1e-9),
        dropped_prompts=dropped,
        stopped_early=stopped_early,
    )

    tokenizer.padding_side = "right"
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    policy_out, value_out = unwrapped.policy, unwrapped.value_model
    adapter = cfg.use_lora and not cfg.merge
    if cfg.use_lora and cfg.merge:
        policy_out = policy_out.merge_and_unload()
    policy_out.save_pretrained(out, safe_serialization=True)
    if adapter:
        # peft writes the base model's absolute path; record it relative to this dir so a moved run still loads
        # (rlhf loads the base through the manifest's parent link).
        cfg_path = out / "adapter_config.json"
        acfg = json.loads(cfg_path.read_text())
        acfg["base_model_name_or_path"] = os.path.relpath(sft.path.resolve(), out.resolve())
        atomic_write_json(cfg_path, acfg)
    if cfg.use_lora:
        prefix = value_out.base_model_prefix
        backbone = getattr(value_out, prefix)
        unshare_parameters(backbone)  # merging writes into the weights, which the reward model shares
        setattr(value_out, prefix, backbone.merge_and_unload())
    value_out.save_pretrained(Path(out) / "value_model", safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not cfg.keep_checkpoints:
        remove_checkpoints(out)
    return checkpoint.finish(
        out,
        "ppo",
        config=config_to_dict(cfg),
        tokenizer=tokenizer,
        parents=[sft, rm],
        metrics=metrics,
        data_fingerprint=None,
        started_at=started,
        template=sft.template,
        base_model=sft.manifest.get("base_model"),
        extra={"adapter": adapter, "resumed_from": resume_from and Path(resume_from).name},
    )


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf ppo") -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    (cfg,) = parse_config([PPOStageConfig], argv, prog=prog)
    stage = main(cfg)
    end_of_run()
    if stage is not None:
        m = stage.metrics
        print(
            f"ppo: finished {stage.path} (score {m.get('objective_scores', float('nan')):.3f}, "
            f"kl {m.get('objective_kl', float('nan')):.3f}, {m['episodes_per_second']:.1f} episodes/s)"
        )
    return 0
