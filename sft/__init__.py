"""Stage 1: Alpaca-style supervised fine-tuning."""

import rlhf as _rlhf  # noqa: E402,F401  (process-wide settings, e.g. OMP_WAIT_POLICY, before torch loads)
