"""Reward scoring: pairs/s of batched scoring (length-sorted batches of 64) vs one pair at a time, same model,
same pairs, same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import demo_chain, parser, report


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--pairs", type=int, default=256)
    a = p.parse_args()
    from reward.data import load_preferences
    from rlhf.evaluation.scoring import RewardScorer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sft, prefs, rm = demo_chain(tmp, a.pairs)
        pairs = load_preferences(prefs, verbose=False)
        scorer = RewardScorer.from_stage(rm)
        scorer.pairwise_accuracy(pairs[:8])  # warm-up
        t0 = time.perf_counter()
        acc_b = scorer.pairwise_accuracy(pairs, batch_size=64)
        batched = len(pairs) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        acc_1 = scorer.pairwise_accuracy(pairs, batch_size=1)
        single = len(pairs) / (time.perf_counter() - t0)
        assert abs(acc_b - acc_1) <= 2 / len(pairs), (
            acc_b,
            acc_1,
        )  # same scores up to float noise from padding
    report(
        "reward scoring",
        [
            {
                "figure": f"pairs/s, batch 64 vs 1 ({len(pairs)} pairs)",
                "ours": batched,
                "baseline": single,
                "unit": "pairs/s",
                "ratio": batched / single,
                "goal": "> 1x",
            }
        ],
        a.json,
    )


if __name__ == "__main__":
    main()
