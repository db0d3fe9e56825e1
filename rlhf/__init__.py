"""rlhf: a readable RLHF kit. Alpaca-style SFT -> reward model -> PPO (TRL), plus labeling and comparison."""

import os as _os

# The kit is offline-first: never let a hub lookup stall a local run.
_os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"

from rlhf import distributed as _distributed  # noqa: E402,F401  (installs a log filter before DeepSpeed loads)
