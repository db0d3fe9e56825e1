"""A task's gold judge as an RL stage's reward (`reward_judge: <task>` in PPO and RLOO): reinforcement learning from
verifiable rewards, and the ablation that tells whether the reward model or the RL method limits a run. Both
stages check the same things before any model loads: the task exists and can judge every prompt row.

`judge_credit` picks what a reply earns. "all": the gold judge's score, the one the report counts (1/0 for the
constraints task: every constraint met or not). "partial": the share of the row's parts (the task's `breakdown`,
e.g. its constraints) the reply meets, so a reply meeting one of two constraints earns 0.5 where the gold judge
gives 0; a degenerate reply meets none. A training-side choice only: the report still scores with the gold judge.
Why offer it: under "all" a prompt whose samples all fall short of one of its constraints gives them all 0, and
that group teaches nothing but KL, though some samples met more of its constraints than others."""

from __future__ import annotations

import dataclasses

from rlhf import tasks
from rlhf.errors import UserError

CREDITS = ("all", "partial")


def judge_credit_field():
    """The `judge_credit` key of the PPO and RLOO configs."""
    return dataclasses.field(
        default="all",
        metadata={
            "choices": list(CREDITS),
            "help": "Under reward_judge, what a reply earns: all = the gold judge's score (what the report "
            "counts); partial = the share of the judge's parts (e.g. constraints) it meets (rlhf/judge_rewards.py).",
        },
    )


def judge_task(name: str, rows: list[dict], where: str, credit: str = "all") -> tasks.Task:
    """Task `name`, whose judge will score rollouts of `rows`; an unknown task, or a row the task cannot judge
    (named by number), is refused naming the key `reward_judge`; partial credit for a task whose judge has no
    parts, naming `judge_credit`."""
    try:
        task = tasks.get(name)
    except ValueError as e:
        raise UserError(str(e), where, "key 'reward_judge'") from None
    if credit not in CREDITS:
        raise UserError(f"expected one of {list(CREDITS)}, got {credit!r}", where, "key 'judge_credit'")
    if credit == "partial" and not task.breakdown_metric:
        raise UserError(
            f"the {name} task's judge has no parts to give partial credit for; use judge_credit: all",
            where,
            "key 'judge_credit'",
        )
    for i, row in enumerate(rows):
        if task.parse(row) is None:
            raise UserError(
                f"prompt row {i} is not a {name} task prompt, so its gold judge cannot score it "
                f"(instruction: {str(row.get('instruction', ''))[:80]!r})",
                where,
                "key 'reward_judge'",
            )
    return task


def refuse_credit_without_judge(cfg) -> None:
    """Partial credit is a way of scoring with a judge: asked for without `reward_judge`, it would be ignored."""
    if cfg.judge_credit != "all" and not cfg.reward_judge:
        raise UserError(
            f"judge_credit {cfg.judge_credit!r} applies only under reward_judge (the reward model scores this run)",
            cfg.config_path or "command line",
            "key 'judge_credit'",
        )


def credited_score(task: tasks.Task, row: dict, text: str, finished: bool, credit: str = "all") -> float:
    """What a reply earns under `credit` (see the module doc): the gold judge's score, or the share of its parts met."""
    if credit == "partial":
        parts = task.breakdown(row, text, finished)
        if parts:
            return sum(parts.values()) / len(parts)
    return float(task.judge(row, text, finished))
