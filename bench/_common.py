"""Shared bits for the benchmarks: machine description, a tiny demo checkpoint, and the result record.

Every benchmark measures its baseline in the same run on the same model and data, prints a table, and (with
--json PATH) writes {"name", "figures": [{"figure", "ours", "baseline", "unit", "ratio", "goal"}], "machine"}.
`bench/run_all.py` collects those into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
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


def format_ratio(figure: dict) -> str:
    """ "1.02x", or with the spread of repeated measurements "1.02x (0.97-1.10, n=3)"; "-" when there is none."""
    if figure.get("ratio") is None:
        return "-"
    text = f"{figure['ratio']:.2f}x"
    if figure.get("spread"):
        low, high = figure["spread"]
        text += f" ({low:.2f}-{high:.2f}, n={figure['reps']})"
    return text


def report(name: str, figures: list[dict], json_path: str | None) -> None:
    width = max(len(f["figure"]) for f in figures)
    print(f"\n{name}")
    for f in figures:
        if f.get("ours") is None:  # a figure that could not be measured: its text says why
            print(f"  {f['figure']}")
            continue
        print(
            f"  {f['figure'].ljust(width)}  ours {f['ours']:.4g} {f['unit']}  baseline {f['baseline']:.4g} {f['unit']}"
            f"  ratio {format_ratio(f)}  (goal {f.get('goal', '-')})"
        )
    if json_path:
        from rlhf.io import atomic_write_json

        atomic_write_json(json_path, {"name": name, "figures": figures, "machine": machine()})


def demo_policy(tmp: Path, seed: int = 0, rows: int = 1500):
    """A quickly trained demo SFT checkpoint (the same kind of model the demo uses)."""
    import sft
    from rlhf.config import build_config
    from rlhf.demo import build_demo_checkpoint, write_tasks

    base = tmp / "base"
    if not (tmp / "sft" / "rlhf_stage.json").exists():
        build_demo_checkpoint(base, seed=seed)
        write_tasks(tmp / "sft.json", rows, seed=seed)
        cfg = build_config(
            sft.SFTStageConfig,
            {
                "config": REPO / "configs/demo/sft.yaml",
                "model_name_or_path": str(base),
                "data_path": str(tmp / "sft.json"),
                "output_dir": str(tmp / "sft"),
                "num_train_epochs": 2,
                "quiet": True,
                "save_strategy": "no",
                "eval_strategy": "no",
            },
        )
        sft.run(cfg)
    return tmp / "sft"


def demo_chain(tmp: Path, prompts: int = 256) -> tuple[Path, Path, Path]:
    """demo_policy + pairs on `prompts` prompts + gold labels + a one-epoch reward model: (sft, prefs, reward)."""
    import reward
    from rlhf.annotators import write_preferences
    from rlhf.config import build_config
    from rlhf.demo import write_tasks
    from rlhf.pairs import write_pairs

    sft = demo_policy(tmp)
    prompts_path, pairs, prefs, rm = (
        tmp / "prompts.json",
        tmp / "pairs.jsonl",
        tmp / "prefs.jsonl",
        tmp / "rm",
    )
    write_tasks(prompts_path, prompts, seed=3, gold=True)
    write_pairs(sft, prompts_path, pairs, progress=False)
    write_preferences(pairs, prefs, annotator="gold")
    cfg = build_config(
        reward.RewardStageConfig,
        {
            "config": REPO / "configs/demo/reward.yaml",
            "sft_path": str(sft),
            "pairs_path": str(prefs),
            "output_dir": str(rm),
            "num_train_epochs": 1,
            "quiet": True,
            "save_strategy": "no",
        },
    )
    reward.run(cfg)
    return sft, prefs, rm


# ------------------------------------------------------------------------------------ per-process measurement


def peak_rss_kb() -> int:
    """This process's own peak RSS in KiB: VmHWM, the high-water mark of its address space, which execve starts
    afresh. Not getrusage's ru_maxrss: Linux keeps that across execve, so a child started by a large parent reports
    the parent's peak whenever its own is lower (a bench that had trained SFT and reward in-process, ~5.7 GB, made
    its 3.8 GB LoRA PPO child read 5.8 GB: bench/NOTES.md)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource  # not Linux

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# The same function pasted into the `python -c` children, which import nothing from bench/.
PEAK_RSS = inspect.getsource(peak_rss_kb)

MEASURED = (
    PEAK_RSS
    + """
import sys, time
from rlhf.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
print("WALL_SECONDS", time.perf_counter() - t0)
print("PEAK_RSS_KB", peak_rss_kb())
sys.exit(rc)
"""
)


def run_measured(rlhf_args: list, *, env: dict | None = None, echo: bool = False) -> dict:
    """Run `rlhf ARGS...` in a fresh process: {"seconds": wall time of the command, "peak_rss_mib": the process's
    own peak RSS (model loading included)}. One process per stage, so each peak is that stage's alone."""
    import subprocess

    res = subprocess.run(
        [sys.executable, "-c", MEASURED, *map(str, rlhf_args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    if echo:
        print(res.stdout.strip())
    if res.returncode != 0:
        raise RuntimeError(f"rlhf {' '.join(map(str, rlhf_args[:1]))} failed:\n{res.stderr[-4000:]}")
    vals = dict(line.split() for line in res.stdout.splitlines() if line.startswith(("WALL_", "PEAK_")))
    return {"seconds": float(vals["WALL_SECONDS"]), "peak_rss_mib": float(vals["PEAK_RSS_KB"]) / 1024}


# Bytes per parameter of what a stage keeps in memory in fp32, before activations (README "Scaling out" uses the
# same arithmetic): a trained model holds weights 4 + gradients 4 + AdamW's two moments 8 = 16; a frozen one 4.
# PPO full: policy and value trained, reference and reward frozen. PPO LoRA: no reference copy (the policy with its
# adapter disabled), frozen policy backbone, and one frozen copy of the reward dir's backbone that the reward and
# value models share (ppo/models.py share_reward_backbone); adapter states are negligible.
BYTES_PER_PARAM = {
    "convert": 8,  # the GGUF-loaded model + the rebuilt copy it is loaded into
    "sft": 16,
    "sft_lora": 4,
    "reward": 16,
    "reward_lora": 4,
    "ppo": 16 + 16 + 4 + 4,
    "ppo_lora": 4 + 4,
    "compare": 4 * 3,  # two policies + the reward model
}


def estimate_mib(params: int, stage: str) -> float:
    return params * BYTES_PER_PARAM[stage] / 2**20


def count_params(model_dir: str | Path) -> int:
    """Parameters in a saved model dir, from the safetensors header (no weights loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            n = 1
            for d in f.get_slice(key).get_shape():
                n *= d
            total += n
    return total
