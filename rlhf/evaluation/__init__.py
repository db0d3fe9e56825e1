"""Evaluation: compare policies (rlhf compare), score with a reward model, statistics, plots and the report."""
