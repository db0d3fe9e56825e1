"""Tasks behind one interface (`rlhf.tasks.base.Task`), found by name or recognised from their rows.

    task = rlhf.tasks.get("demo")
    rows = task.prompts(100, seed=0, split="eval")
    score = task.judge(rows[0], "7")
    task = rlhf.tasks.detect(rows)      # the task whose rows these are, or None

A task family registers itself with a module path, so importing `rlhf.tasks` loads no task until one is used.
"""

from __future__ import annotations

import importlib

from rlhf.tasks.base import Task

# name -> "module:class" of each task family, in the order `detect` tries them.
REGISTRY: dict[str, str] = {
    "demo": "rlhf.tasks.demo:DemoTask",
    "constraints": "rlhf.tasks.constraints:ConstraintsTask",
}
_loaded: dict[str, Task] = {}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Task:
    """The task registered as `name`; ValueError (naming the known tasks) for any other name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(REGISTRY)}")
    if name not in _loaded:
        module, cls = REGISTRY[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)()
    return _loaded[name]


def detect(rows: list[dict]) -> Task | None:
    """The first registered task that recognises every row, or None (rows of no known task, or no rows)."""
    for name in REGISTRY:
        task = get(name)
        if task.recognises(rows):
            return task
    return None


__all__ = ["REGISTRY", "Task", "detect", "get", "names"]
