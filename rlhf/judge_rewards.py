"""A task's gold judge as an RL stage's reward (`reward_judge: <task>` in PPO and RLOO): reinforcement learning from
verifiable rewards, and the ablation that tells whether the reward model or the RL method limits a run. Both
stages check the same things before any model loads: the task exists and can judge every prompt row."""

from __future__ import annotations

from rlhf import tasks
from rlhf.errors import UserError


def judge_task(name: str, rows: list[dict], where: str) -> tasks.Task:
    """Task `name`, whose judge will score rollouts of `rows`; an unknown task, or a row the task cannot judge
    (named by number), is refused naming the key `reward_judge`."""
    try:
        task = tasks.get(name)
    except ValueError as e:
        raise UserError(str(e), where, "key 'reward_judge'") from None
    for i, row in enumerate(rows):
        if task.parse(row) is None:
            raise UserError(
                f"prompt row {i} is not a {name} task prompt, so its gold judge cannot score it "
                f"(instruction: {str(row.get('instruction', ''))[:80]!r})",
                where,
                "key 'reward_judge'",
            )
    return task
