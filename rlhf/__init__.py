"""rlhf: a readable RLHF kit. Alpaca-style SFT -> reward model -> PPO (TRL), plus labeling and comparison."""

import os as _os

# The kit is offline-first: never let a hub lookup stall a local run.
_os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch's OpenMP threads spin while they wait for each other. On a machine whose cores are busy with other work
# that turns every parallel op into a wait for a descheduled thread: the demo SFT step (batch 16 x ~75 tokens)
# took 380-850 ms with 2 threads spinning vs 100-220 ms waiting passively, on 2 shared cores (bench/NOTES.md,
# "Profile of the slowest stage"). The results are the same bit for bit: the policy only changes how an idle
# thread waits, not how work is split. It must be set before torch loads its OpenMP runtime, hence here
# (sft/, reward/, ppo/ import this package first). Set OMP_WAIT_POLICY yourself to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from rlhf import distributed as _distributed  # noqa: E402,F401  (installs a log filter before DeepSpeed loads)
