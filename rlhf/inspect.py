"""`rlhf inspect DIR`: a checkpoint's lineage, newest first: stage kind, path, finish time, key metrics.

$ rlhf inspect runs/demo/ppo
ppo     runs/demo/ppo  finished 2026-11-28 09:12:03
        objective_scores=0.41  objective_kl=1.3  episodes=4096
  reward  runs/demo/reward  finished 2026-11-28 09:10:40
          eval_accuracy=0.79  gold_agreement=0.8
    sft     runs/demo/sft  finished 2026-11-28 09:09:15  base runs/demo/base
            eval_loss=0.57  initial_eval_loss=6.7  train_loss=0.77  train_rows=7600  dropped_rows=0
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser
from rlhf.errors import exit_on_user_error

# Shown first when present; then any other scalar metric (all of them with --all).
KEY_METRICS = (
    "eval_loss", "initial_eval_loss", "train_loss", "eval_accuracy", "gold_agreement",
    "objective_scores", "objective_kl", "objective_rlhf_reward", "train_rows", "dropped_rows", "episodes",
)  # fmt: skip


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _when(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "?"


def key_metrics(metrics: dict, show_all: bool = False) -> list[tuple[str, object]]:
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    keys = [k for k in KEY_METRICS if k in scalars]
    if show_all or not keys:
        keys += [k for k in scalars if k not in keys]
    return [(k, scalars[k]) for k in keys]


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf inspect") -> int:
    from rlhf.checkpoint import MANIFEST, lineage

    p = ArgumentParser(prog=prog, description="Print a checkpoint's lineage (the stage and its ancestors).")
    p.add_argument("dir", help="a finished stage dir")
    p.add_argument("--all", action="store_true", help="every scalar metric, not only the key ones")
    p.add_argument("--json", action="store_true", help="one JSON list instead of text")
    a = p.parse_args(argv)
    stages = lineage(a.dir)
    if a.json:
        rows = [
            {
                "kind": s.kind,
                "path": str(s.path),
                "finished_at": s.manifest.get("finished_at"),
                "base_model": s.manifest.get("base_model"),
                "template": s.template,
                "parents": [str(x) for x in s.parent_paths()],
                "external": [
                    {"role": e.role, "source": str(e.path), "revision": e.revision}
                    for e in s.external_parents()
                ],
                "metrics": s.metrics,
            }
            for s in stages
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    depth = {str(stages[0].path.resolve()): 0}
    for s in stages:
        d = depth.get(str(s.path.resolve()), 0)
        for parent in s.parent_paths():
            depth.setdefault(str(parent.resolve()), d + 1)
        path = os.path.relpath(s.path) if not os.path.isabs(a.dir) else str(s.path.resolve())
        line = f"{'  ' * d}{s.kind:<7} {path}  finished {_when(s.manifest.get('finished_at'))}"
        if s.manifest.get("base_model") and not s.manifest.get("parents"):
            line += f"  base {s.manifest['base_model']}"
        print(line)
        metrics = key_metrics(s.metrics, a.all)
        if metrics:
            print(f"{'  ' * d}        " + "  ".join(f"{k}={_fmt(v)}" for k, v in metrics))
        for e in s.external_parents():  # models the kit did not write: no manifest, so no lineage beyond them
            where = (
                os.path.relpath(e.path)
                if isinstance(e.path, Path) and not os.path.isabs(a.dir)
                else str(e.path)
            )
            revision = f"  revision {e.revision}" if e.revision else ""
            print(f"{'  ' * (d + 1)}external {where}  ({e.role}, no {MANIFEST}){revision}")
    return 0
