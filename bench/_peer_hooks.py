"""What bench/peers.py reads from each side of a peer comparison, recorded the same way on both sides.

Both sides (the kit's `rlhf` command and a bare upstream script) run in their own process and call `install(kind)`
before they build a trainer. It wraps upstream methods, the same ones on both sides, so neither side reports on
itself and the kit's code is not imported here:

- `Trainer.train` (and TRL's `PPOTrainer.train`, which does not call it): seconds inside the outermost call;
- `Trainer.training_step`: the first step's loss (the unrounded value the step returns) and the tokens the loss
  covers in every step (SFT: next-token labels != -100; reward: the non-pad tokens of chosen + rejected);
- PPO (`batch_generation` and `Trainer.log`): generated response tokens, and the first update's logged losses;
- RLOO (`RLOOTrainer._generate_and_score_completions`): the completion tokens the loss covers (its
  `completion_mask`) and a digest of the sampled ids;
- `Trainer.log` (PPO, DPO, RLOO): the first update's logged values in `FIRST_LOGS`;
- `GenerationMixin.generate`: from the start of the first call to the end of the last (so the tokenizing and
  decoding between batches count), new non-pad tokens and a digest of them;
- the trainer's `__init__`: the settings that shape the work (`SETTINGS`), and, when PEER_DUMP names a path, the
  training dataset exactly as the trainer got it, so the bare side can be fed the same token ids.

At exit the record goes to the JSON file PEER_RESULT names, with the process's own peak RSS (`VmHWM`).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import time

from _common import peak_rss_kb  # bench/_common.py imports nothing from the kit

IGNORE_INDEX = -100
# TrainingArguments / PPOConfig fields that change what a run computes: both sides must agree on each one they have.
SETTINGS = (
    "learning_rate lr_scheduler_type warmup_steps warmup_ratio weight_decay per_device_train_batch_size "
    "gradient_accumulation_steps gradient_checkpointing seed max_grad_norm optim adam_beta1 adam_beta2 "
    "adam_epsilon num_train_epochs max_steps bf16 fp16 total_episodes num_ppo_epochs num_mini_batches kl_coef "
    "response_length temperature local_rollout_forward_batch_size cliprange cliprange_value vf_coef gamma lam "
    "whiten_rewards missing_eos_penalty stop_token_id center_rewards_coefficient"
).split()
# Fields of one trainer only, compared only for its pairs (SFTConfig also has a `loss_type`, RewardConfig a
# `disable_dropout`, each with its own meaning and default).
KIND_SETTINGS = {
    "dpo": "beta loss_type label_smoothing max_length truncation_mode disable_dropout precompute_ref_log_probs "
    "use_weighting ld_alpha rpo_alpha".split(),
    "rloo": "beta num_generations max_completion_length generation_batch_size steps_per_generation num_iterations "
    "epsilon epsilon_high normalize_advantages reward_clip_range mask_truncated_completions disable_dropout top_p "
    "top_k min_p repetition_penalty shuffle_dataset".split(),
}
# Logged values of the first update that must agree (bench/peers.py shows the first one). DPO's and RLOO's first
# loss is the same on any data (policy = reference: DPO's is ln 2; RLOO's ~0, each prompt's leave-one-out advantages
# summing to zero), so what proves the same data is the first batch's log-probabilities / rewards.
FIRST_LOGS = {
    "ppo": ("loss/value_avg", "objective/scores", "loss/policy_avg"),
    "dpo": ("logps/chosen", "logps/rejected"),
    "rloo": ("reward", "reward_std"),
}

RECORD: dict = {
    "train_seconds": 0.0,
    "steps": 0,
    "rows": None,
    "trained_tokens": 0,
    "first_loss": None,
    "first_logs": None,
    "generate_start": None,
    "generate_end": None,
    "generated_tokens": 0,
    "settings": {},
}
_depth = {"train": 0, "generate": 0}
_digest = hashlib.sha256()


def _timed(orig, key: str, depth: str):
    def wrapper(*args, **kwargs):
        _depth[depth] += 1
        t0 = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            _depth[depth] -= 1
            if _depth[depth] == 0:
                RECORD[key] += time.perf_counter() - t0

    return wrapper


def _batch_tokens(kind: str, inputs: dict) -> int:
    if kind == "rloo":  # a batch of prompt rows; the completions are counted where they are sampled
        return 0
    if kind == "sft":
        if inputs.get("shift_labels") is not None:
            return int((inputs["shift_labels"] != IGNORE_INDEX).sum())
        return int((inputs["labels"][..., 1:] != IGNORE_INDEX).sum())
    return int(inputs["attention_mask"].sum())  # reward, DPO: every token of chosen + rejected


def _dump_dataset(kind: str, dataset, path: str) -> None:
    from datasets import Dataset

    if kind == "sft":  # the kit's labels -> the completion mask TRL's collator takes
        masks = [[int(t != IGNORE_INDEX) for t in labels] for labels in dataset["labels"]]
        dataset = Dataset.from_dict({"input_ids": dataset["input_ids"], "completion_mask": masks})
    elif kind == "ppo":  # the prompts' ids, as PPOTrainer's collator takes them
        dataset = dataset.select_columns(["input_ids"])
    elif (
        kind == "dpo"
    ):  # the rows the kit handed DPOTrainer, before its tokenizing, which it repeats on any input
        dataset = dataset.select_columns(["prompt", "chosen", "rejected"])
    dataset.save_to_disk(path)


def install(kind: str) -> None:
    """Record `kind` ("sft", "reward", "dpo", "ppo", "rloo" or "generate") work in this process; written at exit."""
    import transformers

    Trainer = transformers.Trainer
    Trainer.train = _timed(Trainer.train, "train_seconds", "train")

    orig_step = Trainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        RECORD["trained_tokens"] += _batch_tokens(kind, inputs)
        loss = orig_step(self, model, inputs, *args, **kwargs)
        if RECORD["steps"] == 0:
            RECORD["first_loss"] = float(loss)
        RECORD["steps"] += 1
        return loss

    Trainer.training_step = training_step

    orig_init = Trainer.__init__

    def init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        names = SETTINGS + KIND_SETTINGS.get(kind, [])
        RECORD["settings"] = {k: getattr(self.args, k) for k in names if hasattr(self.args, k)}
        if kwargs.get("train_dataset") is not None:
            RECORD["rows"] = len(kwargs["train_dataset"])
        dump = os.environ.get("PEER_DUMP")
        if dump and not os.path.exists(dump) and kwargs.get("train_dataset") is not None:
            _dump_dataset(kind, kwargs["train_dataset"], dump)

    if kind == "ppo":
        from trl.experimental.ppo import PPOTrainer, ppo_trainer

        PPOTrainer.train = _timed(PPOTrainer.train, "train_seconds", "train")
        PPOTrainer.__init__, orig_init = init, PPOTrainer.__init__  # PPOTrainer's own __init__ is the one run
        orig_generation = ppo_trainer.batch_generation

        def batch_generation(model, queries, batch_size, pad_token_id, generation_config):
            out = orig_generation(model, queries, batch_size, pad_token_id, generation_config)
            RECORD["trained_tokens"] += int((out[0][:, queries.shape[1] :] != pad_token_id).sum())
            return out

        ppo_trainer.batch_generation = batch_generation
    else:
        Trainer.__init__ = init
    if kind == "rloo":
        from trl import RLOOTrainer

        orig_sample = RLOOTrainer._generate_and_score_completions

        def generate_and_score(self, inputs):
            out = orig_sample(self, inputs)
            mask = out["completion_mask"]
            RECORD["trained_tokens"] += int(mask.sum())
            ids = [row[m.bool()].tolist() for row, m in zip(out["completion_ids"], mask)]
            _digest.update(json.dumps(ids).encode())
            return out

        RLOOTrainer._generate_and_score_completions = generate_and_score
    if kind in FIRST_LOGS:
        first = FIRST_LOGS[kind]
        orig_log = Trainer.log

        def log(self, logs, *args, **kwargs):
            if RECORD["first_logs"] is None and all(k in logs for k in first):
                RECORD["first_logs"] = {k: float(logs[k]) for k in first}
                if kind == "ppo":  # no training_step: the first update's value loss stands for it
                    RECORD["first_loss"] = RECORD["first_logs"][first[0]]
            return orig_log(self, logs, *args, **kwargs)

        Trainer.log = log

    from transformers.generation.utils import GenerationMixin

    orig_generate = GenerationMixin.generate

    def generate(self, *args, **kwargs):
        if RECORD["generate_start"] is None:
            RECORD["generate_start"] = time.perf_counter()
        _depth["generate"] += 1
        try:
            out = orig_generate(self, *args, **kwargs)
        finally:
            _depth["generate"] -= 1
        RECORD["generate_end"] = time.perf_counter()
        if kind == "generate" and _depth["generate"] == 0:
            ids = out if not hasattr(out, "sequences") else out.sequences
            prompt = kwargs.get("input_ids", args[0] if args else None)
            new = ids[:, prompt.shape[1] :]
            pad = kwargs.get("pad_token_id", self.generation_config.pad_token_id)
            RECORD["generated_tokens"] += int((new != pad).sum())
            _digest.update(json.dumps(new.tolist()).encode())
        return out

    GenerationMixin.generate = generate
    atexit.register(_write)


def _write() -> None:
    path = os.environ.get("PEER_RESULT")
    if not path:
        return
    record = {**RECORD, "peak_rss_kb": peak_rss_kb(), "generated_digest": _digest.hexdigest()}
    if RECORD["generate_start"] is not None:
        record["generate_seconds"] = RECORD["generate_end"] - RECORD["generate_start"]
    record["settings"] = {k: v if isinstance(v, int | float | str | bool | None) else str(v)
                          for k, v in record["settings"].items()}  # fmt: skip
    with open(path, "w") as f:
        json.dump(record, f)
