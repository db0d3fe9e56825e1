"""The SFT stage's eval loss of the trained model."""

from __future__ import annotations


def final_eval_loss(trainer) -> float:
    """Eval loss of the trained model: the Trainer's own last evaluation when it ran after the last step (an
    epoch-end or step eval; the same weights and data give the same number), else one more evaluation."""
    state = trainer.state
    if trainer.args.load_best_model_at_end:  # the weights now are the best checkpoint's, not the last step's
        return trainer.evaluate()["eval_loss"]
    for entry in reversed(state.log_history):
        if "eval_loss" in entry:
            if entry.get("step") == state.global_step:
                return entry["eval_loss"]
            break
    return trainer.evaluate()["eval_loss"]
