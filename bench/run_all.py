"""`make bench`: run every benchmark under bench/ (each can also run alone) and write BENCHMARKS.md.

Each figure is measured against a baseline in the same run, on the same model and data."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from _common import REPO, format_ratio, machine

from rlhf.io import atomic_write_text

BENCHES = [
    "sft_throughput.py",
    "generation.py",
    "reward_scoring.py",
    "ppo_overhead.py",
    "peers.py",
    "end_to_end.py",
    "faults.py",
]
# Too long for every `make bench` (10-30 min each on 2 cores): run them alone with `--json BENCH_RESULTS/<name>`;
# BENCHMARKS.md then includes their latest result, marked with the date it was measured.
SEPARATE = {
    "real_model.json": "python bench/real_model.py --json BENCH_RESULTS/real_model.json",
    "ppo_overhead_smollm2.json": "python bench/ppo_overhead.py --model smollm2 --skip-bare "
    "--json BENCH_RESULTS/ppo_overhead_smollm2.json",
}


def main() -> int:
    out_dir = REPO / "BENCH_RESULTS"
    out_dir.mkdir(exist_ok=True)
    # `run_all.py NAME.py ...` runs only those; `run_all.py --report-only` reruns nothing and rewrites
    # BENCHMARKS.md from the results already in BENCH_RESULTS/ (e.g. after running one bench alone).
    report_only = "--report-only" in sys.argv[1:]
    only = [a for a in sys.argv[1:] if a != "--report-only"]
    results, failed = [], []
    for name in BENCHES:
        if only and name not in only:
            continue
        path = REPO / "bench" / name
        if not path.exists():
            continue
        if report_only:
            saved = out_dir / f"{path.stem}.json"
            if saved.exists():
                results.append(json.loads(saved.read_text()))
            continue
        t0 = time.time()
        print(f"bench: {name} ...", flush=True)
        res = subprocess.run(
            [sys.executable, str(path), "--json", str(out_dir / f"{path.stem}.json")], cwd=REPO
        )
        if res.returncode != 0:
            failed.append(name)
            continue
        record = json.loads((out_dir / f"{path.stem}.json").read_text())
        record["seconds"] = time.time() - t0
        results.append(record)
    for name, command in SEPARATE.items():
        path = out_dir / name
        if path.exists() and not only:
            record = json.loads(path.read_text())
            when = time.strftime("%Y-%m-%d", time.localtime(path.stat().st_mtime))
            record["name"] = f"{record['name']} (`{command}`, {when})"
            results.append(record)
    m = machine()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {m['date']}: {m['cpu']}, {m['cores']} cores, "
        f"torch {m['torch']} with {m['torch_threads']} threads. Every baseline is measured in the same run, "
        "on the same model and data. A ratio measured over repetitions shows its median, then (min-max, n=runs).",
        "",
        "| benchmark | figure | ours | baseline | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for f in r["figures"]:
            if f.get("ours") is None:  # not measured; the figure's text says why
                lines.append(f"| {r['name']} | {f['figure'].strip()} |  |  |  | {f.get('goal', '')} |")
                continue
            ratio = format_ratio(f) if f.get("ratio") is not None else ""
            lines.append(
                f"| {r['name']} | {f['figure'].strip()} | {f['ours']:.4g} {f['unit']} | "
                f"{f['baseline']:.4g} {f['unit']} | {ratio} | {f.get('goal', '')} |"
            )
    lines += [
        "",
        "How each figure is measured, and what the current ones mean: [bench/NOTES.md](bench/NOTES.md).",
    ]
    atomic_write_text(REPO / "BENCHMARKS.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
