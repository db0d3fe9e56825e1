"""Stage 3: PPO policy optimisation through TRL's PPOTrainer (trl.experimental.ppo, pinned trl==1.12.0)."""

import rlhf as _rlhf  # noqa: E402,F401  (process-wide settings, e.g. OMP_WAIT_POLICY, before torch loads)
