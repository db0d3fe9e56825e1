"""The embedded demo: synthetic Alpaca-format instruction tasks with a programmatic gold judge."""

from rlhf.tasks.demo import (
    ALL_KINDS,
    DEFAULT_KINDS,
    Task,
    judge,
    make_sft_rows,
    make_tasks,
    parse_task,
)

__all__ = ["ALL_KINDS", "DEFAULT_KINDS", "Task", "judge", "make_sft_rows", "make_tasks", "parse_task"]
