"""rlhf: a readable RLHF kit. Alpaca-style SFT -> reward model -> PPO (TRL), plus labeling and comparison."""

import os as _os

# The kit is offline-first: never let a hub lookup stall a local run.
_os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
# Tokenizer threads off by default (a fork after they ran warns and risks a deadlock); sft/data.py turns them on
# around its batch tokenization unless the user set the variable. The default is marked so that a process this
# one starts (a pipeline's stages, a bench's runs) inherits it as our default, not as the user's choice.
_MARK = "RLHF_TOKENIZERS_PARALLELISM_DEFAULT"
TOKENIZERS_PARALLELISM_SET_BY_USER = "TOKENIZERS_PARALLELISM" in _os.environ and _os.environ.get(
    _MARK
) != _os.environ.get("TOKENIZERS_PARALLELISM")
if not TOKENIZERS_PARALLELISM_SET_BY_USER:
    _os.environ["TOKENIZERS_PARALLELISM"] = _os.environ[_MARK] = "false"
# How idle OpenMP threads wait (spin on free cores, sleep on shared ones) must be set before torch loads its
# OpenMP runtime, hence here: sft/, reward/, ppo/ import this package first. Set OMP_WAIT_POLICY to override.
from rlhf._omp import choose_wait_policy as _choose_wait_policy  # noqa: E402

_choose_wait_policy()

__version__ = "0.1.0"

from rlhf import distributed as _distributed  # noqa: E402,F401  (installs a log filter before DeepSpeed loads)
