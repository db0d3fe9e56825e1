"""Process-wide settings for a run, applied once where a command or stage starts (importing the kit changes nothing).

`configure_process()` is called by the `rlhf` command before it imports the command's module (and so torch), and
should be called by any program that runs a stage through the Python API, as early as it can. A value already
in the environment is the user's and always wins. What it sets, where the user has not:

- TRL_EXPERIMENTAL_SILENCE=1: TRL warns on every import of `trl.experimental` (PPO lives there in 1.12); the kit
  pins that TRL version, so the notice says nothing a user can act on.
- TOKENIZERS_PARALLELISM=false: a process that forks after the Rust tokenizer used its threads warns and risks a
  deadlock. SFT preprocessing turns the threads on around its batch calls (`tokenizer_threads`). The default is
  marked as ours (RLHF_TOKENIZERS_PARALLELISM_DEFAULT) so that a process this one starts (a pipeline's stage, a
  bench run) still knows it is not the user's choice.
- OMP_WAIT_POLICY=PASSIVE when other processes are busy on the cores right now (see rlhf/_omp.py for the
  measurements). OpenMP reads it once, when torch loads its runtime: after `import torch` it is left alone.
- A logging filter that drops DeepSpeed's "Setting accelerator to CPU" notice (rlhf/distributed.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"
_OUR_TOKENIZERS_DEFAULT = "RLHF_TOKENIZERS_PARALLELISM_DEFAULT"


def configure_process() -> dict[str, str]:
    """Apply the settings above; returns the environment variables it set (name -> value)."""
    applied: dict[str, str] = {}
    if "TRL_EXPERIMENTAL_SILENCE" not in os.environ:
        applied["TRL_EXPERIMENTAL_SILENCE"] = "1"
    if not tokenizers_parallelism_set_by_user():
        applied[TOKENIZERS_PARALLELISM] = applied[_OUR_TOKENIZERS_DEFAULT] = "false"
    os.environ.update(applied)
    if "torch" not in sys.modules:
        from rlhf._omp import choose_wait_policy

        policy = choose_wait_policy()  # sets it, unless the user did
        if policy is not None:
            applied["OMP_WAIT_POLICY"] = policy
    import rlhf.distributed  # noqa: F401  (installs its DeepSpeed log filter before transformers can load DeepSpeed)

    return applied


def tokenizers_parallelism_set_by_user() -> bool:
    """Whether TOKENIZERS_PARALLELISM holds a value the user chose (not the default `configure_process` set)."""
    value = os.environ.get(TOKENIZERS_PARALLELISM)
    return value is not None and os.environ.get(_OUR_TOKENIZERS_DEFAULT) != value


@contextmanager
def tokenizer_threads() -> Iterator[None]:
    """Let a fast tokenizer's batch calls use every core (its Rust threads), then restore the variable, so that a
    process forked later sees parallelism configured as before and neither warns nor uses the pool. The Rust
    tokenizer reads the variable on each call. A value the user set is left alone."""
    if tokenizers_parallelism_set_by_user():
        yield
        return
    old = os.environ.get(TOKENIZERS_PARALLELISM)
    os.environ[TOKENIZERS_PARALLELISM] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TOKENIZERS_PARALLELISM, None)
        else:
            os.environ[TOKENIZERS_PARALLELISM] = old


def lazy_stage_exports(package: str, config_module: str, config_class: str):
    """A stage package's module `__getattr__` that imports `run` and its config class on first use. `python -m STAGE`
    imports the package before its `__main__` runs; were `run` imported eagerly, torch would load before
    `configure_process` could choose the OpenMP wait policy."""
    import importlib

    def __getattr__(name: str):
        if name == config_class:
            return getattr(importlib.import_module(config_module), config_class)
        if name == "run":
            return importlib.import_module(f"{package}.train").run
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
