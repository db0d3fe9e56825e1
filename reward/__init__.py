"""Stage 2: a reward model trained on preference pairs (chosen vs rejected)."""
