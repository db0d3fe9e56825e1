"""PPO against a task's gold judge (a program) instead of a trained reward model: `reward_judge: constraints`.

The ablation that tells whether the reward model or PPO limits a run: the same PPO, rewarded by the judge the
report scores with (reinforcement learning from verifiable rewards). TRL 1.12's PPO loop scores a rollout through
`get_reward(model, query_response, ...)`, which calls `getattr(model, model.base_model_prefix)(input_ids=...)` and
then `model.score(hidden_states[-1])` at the response's last token; `JudgeReward` has that shape, so the loop runs
unchanged. Its "backbone" finds each sequence's prompt (the known prompts' token ids are a prefix of it), decodes
the response the way the report does (up to the end of turn, special tokens dropped; finished = it ended its
turn) and hands back the judge's score (under `judge_credit: partial`, the share of its parts met:
rlhf.judge_rewards) at every position.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from rlhf.generate import read_response
from rlhf.judge_rewards import credited_score, judge_task
from rlhf.rollout_prompts import encode_prompts
from rlhf.templates import render_prompts


class _JudgeBackbone(nn.Module):
    def __init__(self, task, prompts: dict[tuple[int, ...], dict], tokenizer, credit: str = "all"):
        super().__init__()
        self.task, self.prompts, self.tokenizer, self.credit = task, prompts, tokenizer, credit
        self.lengths = sorted({len(k) for k in prompts}, reverse=True)

    def row_and_response(self, ids: list[int]) -> tuple[dict, list[int]]:
        for n in self.lengths:
            if (row := self.prompts.get(tuple(ids[:n]))) is not None:
                return row, ids[n:]
        raise RuntimeError(
            "reward_judge: a rollout's prompt is none of the PPO prompts (its token ids differ)"
        )

    def score(self, ids: list[int]) -> float:
        row, response = self.row_and_response(ids)
        # the end of turn is the tokenizer's EOS: ppo/train.py makes it the rollouts' stop token
        reply = read_response(self.tokenizer, response, self.tokenizer.eos_token_id)
        return credited_score(self.task, row, reply.text, reply.finished, self.credit)

    def forward(self, input_ids, attention_mask, **_):
        scores = [self.score(ids[mask].tolist()) for ids, mask in zip(input_ids, attention_mask.bool())]
        filled = torch.tensor(scores, dtype=torch.float32, device=input_ids.device)[:, None, None]
        return SimpleNamespace(hidden_states=(filled.expand(-1, input_ids.shape[1], 1),))


class JudgeReward(nn.Module):
    """A reward "model" whose score at every position of a (prompt, response) sequence is the task's gold judge of
    the response: 1/0 for the constraints task, the demo task's graded score for the demo."""

    base_model_prefix = "backbone"

    def __init__(self, task, prompts: dict[tuple[int, ...], dict], tokenizer, credit: str = "all"):
        super().__init__()
        self.backbone = _JudgeBackbone(task, prompts, tokenizer, credit)
        self.score = nn.Identity()


def judge_reward(
    name: str, rows: list[dict], prompt_ids: list[list[int]], tokenizer, where: str, credit: str = "all"
) -> JudgeReward:
    """The judge of task `name` over these PPO prompt rows (with their rendered prompts' token ids); a row the task
    cannot judge is refused by number, before any model trains (rlhf.judge_rewards)."""
    task = judge_task(name, rows, where, credit)
    return JudgeReward(task, {tuple(ids): row for ids, row in zip(prompt_ids, rows)}, tokenizer, credit)


def judge_for_prompts(cfg, rows: list[dict], template: str, tokenizer) -> JudgeReward:
    """`cfg.reward_judge`'s judge over PPO's prompt rows (train, then eval), rendered with `template` as the rollouts
    see them."""
    ids = encode_prompts(render_prompts(rows, template, tokenizer), tokenizer, template)
    where = cfg.config_path or "command line"
    return judge_reward(cfg.reward_judge, rows, ids, tokenizer, where, cfg.judge_credit)
