"""The reward RLOOTrainer optimises, computed the way the PPO stage computes it: the reward model scores the prompt's
token ids followed by the generated ids (the end of turn included when the response ended), normalised with the
reward stage's held-out mean/std, minus `missing_eos_penalty` for a response that never ended.

Those ids are the sequence the reward stage trained on (rlhf.evaluation.scoring.encode_example): the prompt rendered
with the template (a chat prompt through the chat template, generation prompt included), the reply, and the token
that ends a reply (EOS under Alpaca, the chat template's end of turn under chat: where rollouts stop). TRL's own
reward-model path would decode the response and re-tokenize prompt + response text, which is not that sequence.

Under `reward_judge: <task>` the reward is the task's gold judge instead (`JudgeScore`), as in PPO: the reply read
as the report reads it, minus `missing_eos_penalty` for a reply that never ended."""

from __future__ import annotations

import torch

from rlhf.evaluation.scoring import pad_right
from rlhf.generate import read_response
from rlhf.judge_rewards import credited_score
from rlhf.models import load_scalar_head_model
from rlhf.rollout_prompts import encode_prompts
from rlhf.templates import end_of_turn_id, render_chat


class RewardModelScore:
    """A TRL reward function (called with prompts, completions and completion_ids) backed by a scalar-head model.
    Prompts are what RLOOTrainer generated from (rloo.prompts.prompt_rows): Alpaca text, or chat messages."""

    __name__ = "reward_model"  # the name TRL logs the reward under: rewards/reward_model/mean

    def __init__(self, model, tokenizer, *, template: str = "alpaca", mean: float = 0.0, std: float = 1.0,
                 missing_eos_penalty=None, batch_size: int = 64):  # fmt: skip
        self.model, self.tokenizer, self.template = model.eval(), tokenizer, template
        self.end_id = end_of_turn_id(tokenizer, template)
        self.mean, self.std = float(mean), max(float(std), 1e-6)
        self.missing_eos_penalty, self.batch_size = missing_eos_penalty, batch_size

    def prompt_ids(self, prompts: list) -> list[list[int]]:
        """The ids RLOOTrainer generated from: message lists rendered with the chat template, text as it is."""
        texts = [
            render_chat(self.tokenizer, p, add_generation_prompt=True) if isinstance(p, list) else p
            for p in prompts
        ]
        return encode_prompts(texts, self.tokenizer, self.template)

    @torch.no_grad()
    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], **_) -> list:
        rows = [p + list(c) for p, c in zip(self.prompt_ids(prompts), completion_ids)]
        device = next(self.model.parameters()).device
        scores: list[float] = []
        for i in range(0, len(rows), self.batch_size):
            ids, mask = pad_right(rows[i : i + self.batch_size], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0]
            scores += ((logits.float() - self.mean) / self.std).tolist()
        if self.missing_eos_penalty is not None:
            scores = [
                s - self.missing_eos_penalty * (self.end_id not in c) for s, c in zip(scores, completion_ids)
            ]
        return scores


class JudgeScore:
    """A TRL reward function backed by a task's gold judge. Each reply is read as the report reads it
    (rlhf.generate.read_response: up to the end of turn, special tokens dropped; finished = it ended its turn) and
    judged against its prompt row, found by the dataset's `row` column (rloo.prompts.prompt_rows), which
    RLOOTrainer hands reward functions as a keyword argument. `credit` (rlhf.judge_rewards): the gold judge's
    score, or partial credit per part of it.

    Besides the reward it logs, through TRL's `log_metric`, what each step's samples hold for learning:
    `judge/tied_groups`, the share of prompts whose `num_generations` replies all earn the same reward (judge score
    less any missing-EOS penalty: their leave-one-out advantages are then KL noise alone; TRL's own
    frac_reward_zero_std counts the KL penalty in, so it never ties), and `judge/gold`, the gold judge's mean
    (under partial credit the reward's own mean differs)."""

    __name__ = "judge"  # logged as rewards/judge/mean

    def __init__(
        self, task, rows: list[dict], tokenizer, *, template: str = "alpaca", missing_eos_penalty=None,
        credit: str = "all", num_generations: int = 1,
    ):  # fmt: skip
        self.task, self.rows, self.tokenizer = task, rows, tokenizer
        self.end_id = end_of_turn_id(tokenizer, template)
        self.missing_eos_penalty = missing_eos_penalty or 0.0
        self.credit, self.num_generations = credit, num_generations

    def __call__(
        self, prompts: list, completions: list, completion_ids: list[list[int]], row: list[int], log_metric=None,
        **_,
    ):  # fmt: skip
        scores, gold = [], []
        for i, ids in zip(row, completion_ids):
            reply = read_response(self.tokenizer, list(ids), self.end_id)
            judged = credited_score(self.task, self.rows[i], reply.text, reply.finished, self.credit)
            scores.append(judged - self.missing_eos_penalty * (not reply.finished))
            gold.append(
                judged
                if self.credit == "all"
                else float(self.task.judge(self.rows[i], reply.text, reply.finished))
            )
        if log_metric is not None and scores:
            groups = prompt_groups(row, self.num_generations)
            log_metric(
                "judge/tied_groups", sum(len({scores[j] for j in g}) == 1 for g in groups) / len(groups)
            )
            log_metric("judge/gold", sum(gold) / len(gold))
        return scores


def prompt_groups(rows: list[int], k: int) -> list[list[int]]:
    """Positions of one prompt's samples, for a batch laid out as RLOOTrainer lays it out (each prompt's k
    samples back to back): runs of the same row index, cut into groups of at most k (a prompt drawn twice in a
    row is two groups)."""
    groups: list[list[int]] = []
    for j, r in enumerate(rows):
        if groups and rows[groups[-1][0]] == r and len(groups[-1]) < max(k, 1):
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups


def reward_function(cfg, rm, task, rows: list[dict], tokenizer, template: str):
    """What RLOO optimises: `task`'s judge under reward_judge (rows: the training prompts, by `row` index), else
    the reward stage `rm`'s score, normalised with its held-out mean/std when normalize_reward is set."""
    if task is not None:
        return JudgeScore(
            task, rows, tokenizer, template=template, missing_eos_penalty=cfg.missing_eos_penalty,
            credit=cfg.judge_credit, num_generations=cfg.num_generations or 1,
        )  # fmt: skip
    model = load_scalar_head_model(rm.path, tokenizer, trust_remote_code=cfg.trust_remote_code)
    stats = rm.metrics if cfg.normalize_reward else {}
    return RewardModelScore(
        model,
        tokenizer,
        template=template,
        mean=stats.get("reward_mean", 0.0),
        std=stats.get("reward_std", 1.0),
        missing_eos_penalty=cfg.missing_eos_penalty,
    )
