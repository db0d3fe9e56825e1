"""rlhf: a readable RLHF kit. Alpaca-style SFT -> reward model -> PPO (TRL), plus labeling and comparison.

Importing it (or `sft`, `reward`, `ppo`) changes nothing in the process: the settings a run needs (tokenizer
threads, OpenMP wait policy, library notices) are applied where a command or stage starts, by
`rlhf.runtime.configure_process()`.
"""

__version__ = "0.1.0"
