"""Stage 2: a reward model trained on preference pairs (chosen vs rejected)."""

import rlhf as _rlhf  # noqa: E402,F401  (process-wide settings, e.g. OMP_WAIT_POLICY, before torch loads)
