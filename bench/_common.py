"""Shared bits for the benchmarks: machine description, a tiny demo checkpoint, and the result record.

Every benchmark measures its baseline in the same run on the same model and data, prints a table, and (with
--json PATH) writes {"name", "figures": [{"figure", "ours", "baseline", "unit", "ratio", "goal"}], "machine"}.
`bench/run_all.py` collects those into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
SHARED_DATA = Path(os.environ.get("RLHF_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }


def matmul_peak_gflops(sizes=(256, 512, 1024), seconds: float = 0.5) -> dict:
    """This CPU's fp32 matmul rate with torch's current thread setting: the best GFLOP/s of square
    torch.matmul calls (2 n^3 FLOPs each) over `sizes`, each timed for about `seconds` after a warm-up call.
    The denominator of model FLOPs utilisation (MFU)."""
    import time

    import torch

    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.matmul(a, b, out=out)
        calls, t0 = 0, time.perf_counter()
        while True:
            torch.matmul(a, b, out=out)
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        rates[n] = 2 * n**3 * calls / elapsed / 1e9
    best = max(rates, key=rates.get)
    return {"gflops": rates[best], "size": best, "by_size": rates, "threads": torch.get_num_threads()}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", help="write the result record here")
    return p


def report(name: str, figures: list[dict], json_path: str | None) -> None:
    width = max(len(f["figure"]) for f in figures)
    print(f"\n{name}")
    for f in figures:
        ratio = f"{f['ratio']:.2f}x" if f.get("ratio") is not None else "-"
        print(
            f"  {f['figure'].ljust(width)}  ours {f['ours']:.4g} {f['unit']}  baseline {f['baseline']:.4g} {f['unit']}"
            f"  ratio {ratio}  (goal {f.get('goal', '-')})"
        )
    if json_path:
        from rlhf.io import atomic_write_json

        atomic_write_json(json_path, {"name": name, "figures": figures, "machine": machine()})


def demo_policy(tmp: Path, seed: int = 0, rows: int = 1500):
    """A quickly trained demo SFT checkpoint (the same kind of model the demo uses)."""
    from rlhf.cli import main as rlhf

    base = tmp / "base"
    if not (tmp / "sft" / "rlhf_stage.json").exists():
        rlhf(["demo-model", "--out", str(base), "--seed", str(seed)])
        rlhf(["tasks", "--n", str(rows), "--seed", str(seed), "--out", str(tmp / "sft.json")])
        rlhf(
            [
                "sft",
                "--config",
                str(REPO / "configs/demo/sft.yaml"),
                "--model_name_or_path",
                str(base),
                "--data_path",
                str(tmp / "sft.json"),
                "--output_dir",
                str(tmp / "sft"),
                "--num_train_epochs",
                "2",
                "--quiet",
                "true",
                "--save_strategy",
                "no",
                "--eval_strategy",
                "no",
            ]
        )
    return tmp / "sft"


def demo_chain(tmp: Path, prompts: int = 256) -> tuple[Path, Path, Path]:
    """demo_policy + pairs on `prompts` prompts + gold labels + a one-epoch reward model: (sft, prefs, reward)."""
    from rlhf.cli import main as rlhf

    sft = demo_policy(tmp)
    prompts_path, pairs, prefs, rm = (
        tmp / "prompts.json",
        tmp / "pairs.jsonl",
        tmp / "prefs.jsonl",
        tmp / "rm",
    )
    rlhf(["tasks", "--n", str(prompts), "--seed", "3", "--gold", "--out", str(prompts_path)])
    rlhf(["pairs", "--policy", str(sft), "--prompts", str(prompts_path), "--quiet", "--out", str(pairs)])
    rlhf(["annotate", str(pairs), "--annotator", "gold", "--out", str(prefs)])
    rlhf(
        [
            "reward",
            "--config",
            str(REPO / "configs/demo/reward.yaml"),
            "--sft_path",
            str(sft),
            "--pairs_path",
            str(prefs),
            "--output_dir",
            str(rm),
            "--num_train_epochs",
            "1",
            "--quiet",
            "true",
            "--save_strategy",
            "no",
        ]
    )
    return sft, prefs, rm
