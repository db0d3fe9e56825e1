"""rlhf: a readable RLHF kit. Alpaca-style SFT -> reward model -> PPO (TRL), plus labeling and comparison."""

import os as _os

# The kit is offline-first: never let a hub lookup stall a local run.
_os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
# Tokenizer threads off by default (a fork after they ran warns and risks a deadlock); sft/data.py turns them on
# around its batch tokenization unless the user set the variable.
TOKENIZERS_PARALLELISM_SET_BY_USER = "TOKENIZERS_PARALLELISM" in _os.environ
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# How idle OpenMP threads wait (spin on free cores, sleep on shared ones) must be set before torch loads its
# OpenMP runtime, hence here: sft/, reward/, ppo/ import this package first. Set OMP_WAIT_POLICY to override.
from rlhf._omp import choose_wait_policy as _choose_wait_policy  # noqa: E402

_choose_wait_policy()

__version__ = "0.1.0"

from rlhf import distributed as _distributed  # noqa: E402,F401  (installs a log filter before DeepSpeed loads)
