"""`rlhf score`: pairwise accuracy of a reward model on a pairs file, or the scalar reward of one response."""

from __future__ import annotations

from rlhf.argparse_utils import ArgumentParser
from rlhf.errors import UserError, exit_on_user_error
from rlhf.evaluation.scoring import RewardScorer
from rlhf.preferences import load_preferences
from rlhf.templates import TEMPLATES


@exit_on_user_error
def cli(argv=None, prog="rlhf score") -> int:
    p = ArgumentParser(prog=prog, description="Score with a reward model (a finished reward stage dir).")
    p.add_argument("checkpoint", help="a finished reward stage dir (or a sequence-classification model dir)")
    p.add_argument("--pairs", help="preference pairs file: prints pairwise accuracy")
    p.add_argument("--instruction", help="score one response to this instruction")
    p.add_argument("--input", default="")
    p.add_argument("--response")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--template",
        choices=TEMPLATES,
        default=None,
        help="prompt template for a reward model without a manifest (default alpaca; chat: the tokenizer's own)",
    )
    a = p.parse_args(argv)
    if bool(a.pairs) == bool(a.instruction):
        raise UserError("give either --pairs FILE or --instruction TEXT --response TEXT", "command line")
    if a.instruction and a.response is None:
        raise UserError("--instruction needs --response", "command line", "--response")
    pairs = load_preferences(a.pairs) if a.pairs else None  # validate input before loading the model
    scorer = RewardScorer.from_stage(a.checkpoint, batch_size=a.batch_size, template=a.template)
    if pairs is not None:
        acc = scorer.pairwise_accuracy(pairs)
        print(f"pairwise accuracy: {acc:.4f} ({round(acc * len(pairs))}/{len(pairs)} pairs)")
    else:
        print(f"{scorer.score([(a.instruction, a.input)], [a.response])[0]:.6f}")
    return 0
