"""End to end: the demo pipeline (what `make demo` runs) from an empty run dir, wall time with the per-stage split.
Goal < 300 s on 2 cores. The baseline column is the goal itself."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from _common import REPO, parser, report


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    from rlhf.pipeline import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        metrics = run_pipeline(
            str(REPO / "configs/demo/pipeline.yaml"), Path(tmp) / "run", seed=a.seed, quiet=True
        )
        wall = time.perf_counter() - t0
    figures = [
        {
            "figure": "make demo wall time",
            "ours": wall,
            "baseline": 300.0,
            "unit": "s",
            "ratio": wall / 300.0,
            "goal": "< 300 s",
        }
    ]
    for k, v in metrics.items():
        if k.startswith("step_seconds."):
            figures.append(
                {
                    "figure": f"  step {k.split('.', 1)[1]}",
                    "ours": v,
                    "baseline": wall,
                    "unit": "s",
                    "ratio": v / wall,
                    "goal": "share",
                }
            )
    report("end to end", figures, a.json)
    print(
        json.dumps(
            {k: metrics[k] for k in ("ppo.gold_winrate_vs_sft", "reward.gold_agreement") if k in metrics}
        )
    )


if __name__ == "__main__":
    main()
