"""The task interface: where prompts come from and how a response is judged, for every stage and tool.

A task family (the embedded demo, or verifiable instructions with checkable constraints) implements `Task`:

- `prompts(n, seed=, split=, kinds=)`: `n` rows in Alpaca form (`instruction`, `input`, and `output` when the task
  has a reference answer), drawn deterministically from `seed` and one split ("train", "eval", or None for
  either). Rows may carry task fields of their own (the demo's `kind`, a constraint list).
- `parse(row)`: the task item behind a row (what the judge needs, e.g. the correct answer or the constraints),
  or None when the row is not one of this task's. This is how a prompts file is recognised (`detect`).
- `judge(row, response, finished=True)`: the gold score in [0, 1]; a response cut at the length limit
  (`finished=False`) is judged as the task decides (the demo scores it 0).
- `reference(row)`: an optional reference answer (None when the task has none).
- `topic(row)`: optional, what an answer to the row should be about (the constraints task: the instruction without
  its constraints, and its input), for compare's lexical on-topic check (`rlhf.evaluation.on_topic`) where the
  judge does not check relevance; None (the default) when the task has no such check.
- `breakdown(row, response, finished=True)`: optional, for a task whose judge combines parts (the constraints
  task: one result per constraint type): each part's result, so a report can give per-part rates. A task with
  parts names the rate's metric in `breakdown_metric`; the default is no breakdown.

Stages and tools ask the registry (`rlhf.tasks.get`, `rlhf.tasks.detect`), never a task module directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Task(ABC):
    """One task family: its prompts, its gold judge and, optionally, its reference answers."""

    name: str = ""
    #: The kinds (sub-families) a caller may restrict `prompts` to; empty if the task has none.
    kinds: tuple[str, ...] = ()
    #: The kinds `prompts` draws when none are given.
    default_kinds: tuple[str, ...] = ()

    @abstractmethod
    def prompts(
        self, n: int, *, seed: int = 0, split: str | None = "train", kinds: tuple[str, ...] | None = None
    ) -> list[dict]:
        """`n` prompt rows of the given kinds (the task's defaults if None) from one split."""

    @abstractmethod
    def parse(self, row: dict) -> Any | None:
        """The task item a row holds, or None if the row is not one of this task's."""

    @abstractmethod
    def judge(self, row: dict, response: str, finished: bool = True) -> float:
        """Gold score in [0, 1] of `response` to `row`; ValueError if the row is not one of this task's."""

    #: The metric name of per-part rates (e.g. "constraint_rate"), or "" when the task has no `breakdown`.
    breakdown_metric: str = ""
    #: What one part is, in words (e.g. "constraint type"), for a report's table.
    breakdown_label: str = ""

    def breakdown(self, row: dict, response: str, finished: bool = True) -> dict[str, bool] | None:
        """Per part of `row`'s judgement (e.g. per constraint): whether `response` satisfies it; None (the default)
        when the task's judge has no parts."""
        return None

    def reference(self, row: dict) -> str | None:
        """A reference answer for `row` (e.g. for ROUGE), or None when the task has none."""
        return None

    def topic(self, row: dict) -> str | None:
        """What an answer to `row` should be about, for the on-topic check; None when the task has none."""
        return None

    def recognises(self, rows: list[dict]) -> bool:
        """Whether every row (and at least one) is one of this task's."""
        return bool(rows) and all(self.parse(r) is not None for r in rows)

    def check_kinds(self, kinds: tuple[str, ...]) -> tuple[str, ...]:
        """`kinds` if each is one of this task's, else ValueError naming the first unknown one."""
        for k in kinds:
            if k not in self.kinds:
                raise ValueError(
                    f"unknown {self.name} task kind {k!r}; expected some of {','.join(self.kinds)}"
                )
        return kinds
