"""The reward stage's preference reader under its earlier name: the pairs loader lives in `rlhf.preferences`, shared
with the DPO stage. Tests, bench scripts and docs that name `reward.data.load_preferences` keep working."""

from rlhf.preferences import HH_ASSISTANT, hh_messages, load_preferences

__all__ = ["HH_ASSISTANT", "hh_messages", "load_preferences"]
