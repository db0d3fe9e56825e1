"""Stage 3: PPO policy optimisation through TRL's PPOTrainer (trl.experimental.ppo, pinned trl==1.12.0)."""
