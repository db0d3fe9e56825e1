"""Peer baselines: each kit stage against the bare upstream script a researcher would run instead, on the same
model, token ids, batch and settings, measured in the same run.

| pair | ours | baseline |
|---|---|---|
| sft padding-free / padded / chat | `rlhf sft` | TRL `SFTTrainer`, completion-only loss (`_bare_sft.py`) |
| reward | `rlhf reward` | TRL `RewardTrainer` (`_bare_reward.py`) |
| dpo | `rlhf dpo` | TRL `DPOTrainer`, frozen reference copy (`_bare_dpo.py`) |
| ppo | `rlhf ppo` | TRL `PPOTrainer` (`_bare_ppo.py`) |
| rloo | `rlhf rloo` | TRL `RLOOTrainer`, reward function over the reward model (`_bare_rloo.py`) |
| generate | `rlhf.generate.generate` (what `rlhf compare` samples with) | plain batched `model.generate` |

Every side runs in its own process (so its peak RSS is its own) with bench/_peer_hooks.py recording, identically on
both sides, the seconds inside `Trainer.train` (generation: from the first `generate` call to the end of the last),
the trained tokens, the first step's loss and the settings the trainer got. The bare side is fed the dataset the
kit's first run handed its trainer (the same token ids: TRL tokenizes prompt and prompt + completion separately
and, on ~4% of Alpaca rows, BPE merges across "### Response:" so its ids would differ), so the kit's side runs
first; then the sides alternate (ours, bare, bare, ours, ours, bare, ...) so that drift on a shared machine hits
both. Each figure is the median over the repetitions of the per-repetition ratio, with its min and max.

Same work, proven: the bench exits non-zero, naming the pair, when the two sides' trained tokens, first-step loss
(PPO: first update's score, policy and value loss; DPO: also the first batch's chosen and rejected log-probabilities;
RLOO: also the first update's reward mean and std and the sampled ids; generation: the generated token ids) or
settings differ beyond 1e-4 relative.

--quick (`make bench-quick`): reduced sizes; DPO, PPO and RLOO on the demo model, SFT padding-free, reward and
generation on SmolLM2 (each pair's `quick_models`). SmolLM2-135M-Instruct comes from the GGUF `make setup`
installs, converted once into BENCH_RESULTS/work/ (as tests/test_real_model.py does); without it the SmolLM2 pairs are
reported as skipped.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import REPO, SHARED_DATA, demo_chain, parser, report

WORK = REPO / "BENCH_RESULTS" / "work" / "peers"
BENCH = REPO / "bench"
TOLERANCE = 1e-4  # relative; values closer to zero than FLOOR compare absolutely
FLOOR = 1e-7

# Sizes: rows / pairs / episodes / prompts per run. Quick keeps each SmolLM2 run under ~half a minute on 2 cores.
SIZES = {
    "demo": {
        "full": {"sft_rows": 256, "pairs": 128, "episodes": 256, "prompts": 256},
        "quick": {"sft_rows": 128, "pairs": 64, "episodes": 128, "prompts": 128},
    },
    "smollm2": {  # DPO reads `pairs`, RLOO `episodes`
        "full": {"sft_rows": 24, "pairs": 12, "episodes": 8, "prompts": 32},
        "quick": {"sft_rows": 8, "pairs": 8, "episodes": 8, "prompts": 8},  # generation: one batch
    },
}
# Settings both sides get (the kit as flags, the bare script as its TRL config's fields).
SFT = {
    "demo": {"per_device_train_batch_size": 16, "learning_rate": 2e-4, "max_length": 128},
    "smollm2": {"per_device_train_batch_size": 4, "learning_rate": 2e-5, "max_length": 256},
}
REWARD = {  # center_rewards_coefficient: the kit's default (TRL's is None), given to both sides
    "demo": {"per_device_train_batch_size": 16, "learning_rate": 1e-4, "max_length": 128,
             "center_rewards_coefficient": 0.01},
    "smollm2": {"per_device_train_batch_size": 4, "learning_rate": 1e-5, "max_length": 256,
                "center_rewards_coefficient": 0.01},
}  # fmt: skip
PPO = {  # bench/ppo_overhead.py's settings; SmolLM2 with 16-token responses (one update of 8 episodes: ~4 min a side
    # under load with 32 tokens and 2 updates, too long for 6 runs in make bench)
    "demo": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1, "local_rollout_forward_batch_size": 64,
             "learning_rate": 2e-4, "kl_coef": 0.03, "response_length": 20},
    "smollm2": {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
                "local_rollout_forward_batch_size": 2, "learning_rate": 3e-6, "kl_coef": 0.05, "response_length": 16},
}  # fmt: skip
DPO = {  # configs/demo/dpo.yaml's beta and max_length; reward's batches (a DPO step runs policy and reference on both)
    "demo": {"per_device_train_batch_size": 16, "learning_rate": 2e-4, "max_length": 128, "beta": 0.1},
    "smollm2": {"per_device_train_batch_size": 4, "learning_rate": 5e-7, "max_length": 256, "beta": 0.1},
}
RLOO = {  # configs/demo/rloo.yaml (PPO's KL coefficient, response length and temperature); per_device_train_batch_size
    # counts completions: demo 16 prompts x 4 samples per update; SmolLM2 2 prompts x 4 in micro-batches of 4,
    # PPO's 8 episodes of 16 tokens
    "demo": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1, "learning_rate": 1e-4,
             "beta": 0.05, "max_completion_length": 20},
    "smollm2": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "learning_rate": 3e-6,
                "beta": 0.05, "max_completion_length": 16},
}  # fmt: skip
GENERATE = {
    "demo": {"batch_size": 32, "max_new_tokens": 24},
    "smollm2": {"batch_size": 8, "max_new_tokens": 32},
}
TRAINING = {"num_train_epochs": 1, "seed": 0, "gradient_accumulation_steps": 1, "weight_decay": 0.0,
            "lr_scheduler_type": "cosine", "warmup_steps": 0.03}  # fmt: skip


@dataclass
class Chain:
    """What the pairs of one model start from."""

    model: str
    base: Path  # a causal LM (SFT's starting point)
    sft_rows: list[dict]  # Alpaca rows
    sft: Path  # a finished kit SFT stage (reward's, PPO's and generation's starting point)
    pairs: Path  # preference pairs the kit's reward stage reads
    reward: Path  # a finished kit reward stage (PPO's reward and value model)
    prompt_rows: list[dict]  # instruction rows for PPO and generation


@dataclass
class Pair:
    """One peer comparison: `commands(chain, size, out_ours, out_bare, dump)` -> (ours argv, bare argv, units)."""

    name: str
    kind: str  # what bench/_peer_hooks.py records: sft, reward, ppo, generate
    unit: str  # what the time is divided by
    goal: str
    commands: Callable
    quick_models: tuple[str, ...] = ("demo", "smollm2")
    models: tuple[str, ...] = ("demo", "smollm2")
    available: Callable[[], str | None] = lambda: (
        None
    )  # why the kit cannot run this pair in this tree, if not


def flags(settings: dict) -> list[str]:
    return [x for k, v in settings.items() for x in (f"--{k}", str(v))]


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path


def sft_commands(padding_free: bool, template: str = "alpaca") -> Callable:
    def commands(c: Chain, size: dict, out_ours: Path, out_bare: Path, dump: Path):
        n = size["sft_rows"]
        rows = write_json(WORK / f"{c.model}-sft-rows.json", c.sft_rows[:n])
        settings = {**TRAINING, **SFT[c.model], "padding_free": padding_free}
        max_length = settings.pop("max_length")
        ours = ["sft", "--model_name_or_path", c.base, "--data_path", rows, "--output_dir", out_ours,
                "--eval_fraction", "0", "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1",
                "--quiet", "true", "--template", template, "--max_length", max_length, *flags(settings)]  # fmt: skip
        return ["sft", *ours], [BENCH / "_bare_sft.py", c.base, dump, out_bare, json.dumps(settings)], None

    return commands


def reward_commands(c: Chain, size: dict, out_ours: Path, out_bare: Path, dump: Path):
    settings = {**TRAINING, **REWARD[c.model]}
    max_length = settings.pop("max_length")
    ours = ["reward", "--sft_path", c.sft, "--pairs_path", c.pairs, "--output_dir", out_ours, "--eval_fraction", "0", "--eval_strategy", "no",
            "--save_strategy", "no", "--logging_steps", "1", "--quiet", "true", "--max_length", max_length,
            "--max_pairs", size["pairs"], *flags(settings)]  # fmt: skip
    return ["reward", *ours], [BENCH / "_bare_reward.py", c.sft, dump, out_bare, json.dumps(settings)], None


def ppo_commands(c: Chain, size: dict, out_ours: Path, out_bare: Path, dump: Path):
    settings = {**PPO[c.model], "total_episodes": size["episodes"], "num_ppo_epochs": 4, "num_mini_batches": 1,
                "temperature": 0.7, "missing_eos_penalty": 1.0, "seed": 0}  # fmt: skip
    prompts = write_json(WORK / f"{c.model}-ppo-prompts.json", c.prompt_rows[: size["episodes"]])
    recipe = REPO / ("configs/demo/ppo.yaml" if c.model == "demo" else "configs/smollm2-135m/ppo.yaml")
    ours = ["ppo", "--config", recipe, "--sft_path", c.sft, "--reward_path", c.reward, "--prompts_path", prompts,
            "--num_eval_prompts", "0", "--kl_stop", "null", "--normalize_reward", "false", "--quiet", "true",
            "--save_strategy", "no", "--output_dir", out_ours, *flags(settings)]  # fmt: skip
    bare = [BENCH / "_bare_ppo.py", c.sft, c.reward, dump, out_bare, json.dumps(settings)]
    return ["ppo", *ours], bare, size["episodes"]


def dpo_commands(c: Chain, size: dict, out_ours: Path, out_bare: Path, dump: Path):
    settings = {**TRAINING, **DPO[c.model]}
    ours = ["dpo", "--sft_path", c.sft, "--pairs_path", c.pairs, "--output_dir", out_ours, "--eval_fraction", "0",
            "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1", "--quiet", "true",
            "--max_pairs", size["pairs"], *flags(settings)]  # fmt: skip
    return ["dpo", *ours], [BENCH / "_bare_dpo.py", c.sft, dump, out_bare, json.dumps(settings)], None


def rloo_commands(c: Chain, size: dict, out_ours: Path, out_bare: Path, dump: Path):
    r = RLOO[c.model]
    updates = size["episodes"] // (r["per_device_train_batch_size"] * r["gradient_accumulation_steps"])
    settings = {**TRAINING, **r, "num_generations": 4, "max_steps": updates, "lr_scheduler_type": "constant",
                "temperature": 0.7, "missing_eos_penalty": 1.0}  # fmt: skip
    prompts = write_json(WORK / f"{c.model}-rloo-prompts.json", c.prompt_rows[: size["episodes"] // 4])
    # The reward as the bare side computes it: the reward model's raw score (no normalising with the reward
    # stage's statistics, which a bare script does not have), minus the missing-EOS penalty.
    ours = ["rloo", "--sft_path", c.sft, "--reward_path", c.reward, "--prompts_path", prompts,
            "--num_eval_prompts", "0", "--normalize_reward", "false", "--save_strategy", "no", "--quiet", "true",
            "--output_dir", out_ours, *flags(settings)]  # fmt: skip
    bare = [BENCH / "_bare_rloo.py", c.sft, c.reward, dump, out_bare, json.dumps(settings)]
    return (
        ["rloo", *ours],
        bare,
        updates * r["per_device_train_batch_size"] * r["gradient_accumulation_steps"],
    )


def generate_commands(c: Chain, size: dict, out_ours: Path, out_bare: Path, dump: Path):
    from rlhf.templates import format_prompt

    rows = c.prompt_rows[: size["prompts"]]
    prompts = write_json(
        WORK / f"{c.model}-gen-prompts.json",
        [format_prompt(r["instruction"], r.get("input", "")) for r in rows],
    )
    g = GENERATE[c.model]
    args = [c.sft, prompts, g["batch_size"], g["max_new_tokens"]]
    return ["generate", *args], [BENCH / "_bare_generate.py", *args], len(rows)


def chat_template_available() -> str | None:
    from rlhf import templates

    if "chat" not in getattr(templates, "TEMPLATES", ()):
        return "not available in this tree (the kit's SFT has no `template: chat`)"
    return None


# The table of pairs. A new stage's pair is one entry here plus its bare script (bench/_bare_NAME.py: the TRL trainer
# on the dataset the kit's run dumps) and, if its batches are not counted by `_batch_tokens` in
# bench/_peer_hooks.py (pairwise batches with an attention_mask are), a line there.
PAIRS = [
    # Quick leaves the demo SFT out (SmolLM2's pair holds the goal) to stay within 10 minutes on 2 cores.
    Pair("sft padding-free", "sft", "token", "<= 0.8x", sft_commands(True), quick_models=("smollm2",)),
    Pair("sft padded", "sft", "token", "-", sft_commands(False), quick_models=()),
    Pair(
        "sft padding-free chat template",
        "sft",
        "token",
        "<= 0.8x",
        sft_commands(True, "chat"),
        quick_models=(),
        models=("smollm2",),
        available=chat_template_available,
    ),
    Pair("reward", "reward", "pair", "<= 1.05x", reward_commands, quick_models=("smollm2",)),
    Pair("dpo", "dpo", "pair", "<= 1.05x", dpo_commands, quick_models=("demo",)),
    Pair("ppo", "ppo", "episode", "<= 1.05x", ppo_commands, quick_models=("demo",)),
    Pair("rloo", "rloo", "episode", "<= 1.05x", rloo_commands, quick_models=("demo",)),
    Pair("generate", "generate", "response", "<= 1.05x", generate_commands, quick_models=("smollm2",)),
]


# ------------------------------------------------------------------------------------------------ the chains


def demo_chain_for_peers() -> Chain:
    from rlhf.tasks.demo import make_tasks

    tmp = WORK / "demo"
    tmp.mkdir(parents=True, exist_ok=True)
    sft, prefs, rm = tmp / "sft", tmp / "prefs.jsonl", tmp / "rm"
    if not (rm / "rlhf_stage.json").exists():  # demo_chain reuses a finished sft/ but not a finished rm/
        shutil.rmtree(rm, ignore_errors=True)
        sft, prefs, rm = demo_chain(tmp)
    rows = json.loads((tmp / "sft.json").read_text())
    prompts = [t.to_row() for t in make_tasks(512, 101, ("largest", "smallest"))]
    return Chain("demo", tmp / "base", rows, sft, prefs, rm, prompts)


def smollm2_chain() -> Chain | None:
    """SmolLM2-135M-Instruct converted from its GGUF, a short kit SFT and reward stage on it; cached in WORK."""
    import reward
    import sft as sft_stage
    from rlhf.config import build_config
    from rlhf.convert import convert_gguf, find_smollm2_gguf, quiet_progress

    tmp = WORK / "smollm2"
    base, sft, rm = tmp / "base", tmp / "sft", tmp / "reward"
    alpaca = json.loads((SHARED_DATA / "alpaca" / "alpaca_4000.json").read_text(encoding="utf-8"))
    pairs = tmp / "pairs.jsonl"
    tmp.mkdir(parents=True, exist_ok=True)
    if not pairs.exists():
        with gzip.open(SHARED_DATA / "hh_rlhf" / "harmless_base_test.jsonl.gz", "rt", encoding="utf-8") as f:
            pairs.write_text("\n".join(f.read().splitlines()[:64]) + "\n")
    if not (base / "config.json").exists():
        gguf = find_smollm2_gguf()
        if gguf is None:
            return None
        with quiet_progress():
            convert_gguf(gguf, base)
    common = {
        "save_strategy": "no",
        "quiet": True,
        "max_length": 256,
        "eval_strategy": "no",
        "eval_fraction": 0,
    }
    if not (sft / "rlhf_stage.json").exists():
        shutil.rmtree(sft, ignore_errors=True)
        write_json(tmp / "chain-sft.json", alpaca[:8])
        sft_stage.run(build_config(sft_stage.SFTStageConfig, {
            "model_name_or_path": str(base), "data_path": str(tmp / "chain-sft.json"), "output_dir": str(sft),
            "num_train_epochs": 1, **common}))  # fmt: skip
    if not (rm / "rlhf_stage.json").exists():
        shutil.rmtree(rm, ignore_errors=True)
        reward.run(build_config(reward.RewardStageConfig, {
            "sft_path": str(sft), "pairs_path": str(pairs), "output_dir": str(rm), "max_pairs": 8, **common}))  # fmt: skip
    return Chain("smollm2", base, alpaca[2000:], sft, pairs, rm, alpaca[1000:2000])


# ----------------------------------------------------------------------------------------------- measurement


def run_side(argv: list, result: Path, dump: Path | None) -> dict:
    env = {**os.environ, "PEER_RESULT": str(result)}
    env.pop("PEER_DUMP", None)
    if dump is not None:
        env["PEER_DUMP"] = str(dump)
    result.unlink(missing_ok=True)
    cmd = [sys.executable, *map(str, argv)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if res.returncode != 0 or not result.exists():
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return {**json.loads(result.read_text()), "process_seconds": time.perf_counter() - t0}


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= max(TOLERANCE * max(abs(a), abs(b)), FLOOR)


def same_work(kind: str, ours: dict, bare: dict) -> list[str]:
    """How the two sides' work differs ([] when it does not)."""
    problems = []
    if kind == "generate":
        if (
            ours["generated_tokens"] != bare["generated_tokens"]
            or ours["generated_digest"] != bare["generated_digest"]
        ):
            problems.append(f"generated tokens {ours['generated_tokens']} vs {bare['generated_tokens']}, "
                            f"token ids {'equal' if ours['generated_digest'] == bare['generated_digest'] else 'differ'}")  # fmt: skip
        return problems
    if not close(ours["trained_tokens"], bare["trained_tokens"]):
        problems.append(f"trained tokens {ours['trained_tokens']} vs {bare['trained_tokens']}")
    if kind == "rloo" and ours["generated_digest"] != bare["generated_digest"]:
        problems.append("sampled completion ids differ")
    for k in ours["first_logs"] or {}:  # PPO, RLOO: the first update's logged losses / rewards
        if not close(ours["first_logs"][k], (bare["first_logs"] or {}).get(k)):
            problems.append(
                f"first update {k} {ours['first_logs'][k]!r} vs {(bare['first_logs'] or {}).get(k)!r}"
            )
    if kind != "ppo" and not close(ours["first_loss"], bare["first_loss"]):
        problems.append(f"first-step loss {ours['first_loss']!r} vs {bare['first_loss']!r}")
    for k in ours["settings"].keys() & bare["settings"].keys():
        if ours["settings"][k] != bare["settings"][k]:
            problems.append(f"setting {k} {ours['settings'][k]!r} vs {bare['settings'][k]!r}")
    return problems


def measure(pair: Pair, chain: Chain, size: dict, reps: int) -> tuple[list[dict], list[str], dict]:
    """`reps` (ours, bare) runs, ours first and then alternating: figures, same-work problems, the runs."""
    slug = f"{chain.model}-{pair.name.replace(' ', '_')}"
    dump = WORK / f"{slug}-data"
    shutil.rmtree(dump, ignore_errors=True)
    runs: dict[str, list[dict]] = {"ours": [], "bare": []}
    problems: list[str] = []
    for rep in range(reps):
        for side in ("ours", "bare") if rep % 2 == 0 else ("bare", "ours"):
            out = WORK / f"{slug}-{side}"
            shutil.rmtree(out, ignore_errors=True)
            ours_argv, bare_argv, units = pair.commands(chain, size, out, out, dump)
            argv = [BENCH / "_peer_ours.py", *ours_argv] if side == "ours" else bare_argv
            record = run_side(argv, WORK / f"{slug}-{side}.json", dump if side == "ours" else None)
            shutil.rmtree(out, ignore_errors=True)
            record["units"] = units
            runs[side].append(record)
            print(f"  {chain.model} {pair.name} rep {rep + 1} {side}: {seconds(pair.kind, record):.2f} s, "
                  f"peak RSS {record['peak_rss_kb'] / 1024:.0f} MiB", flush=True)  # fmt: skip
        problems = same_work(pair.kind, runs["ours"][-1], runs["bare"][-1])
        if problems:
            break
    shutil.rmtree(dump, ignore_errors=True)
    return figures(pair, chain.model, runs), problems, runs


def seconds(kind: str, record: dict) -> float:
    return record["generate_seconds"] if kind == "generate" else record["train_seconds"]


def units(pair: Pair, record: dict) -> float:
    if pair.kind == "sft":
        return record["trained_tokens"]
    if pair.kind in ("reward", "dpo"):  # the pairs the trainer got, after TRL's own filter
        return record["rows"]
    return record["units"]


def spread_figure(figure: str, ours: list[float], bare: list[float], unit: str, goal: str) -> dict:
    ratios = [o / b for o, b in zip(ours, bare)]
    return {
        "figure": figure,
        "ours": statistics.median(ours),
        "baseline": statistics.median(bare),
        "unit": unit,
        "ratio": statistics.median(ratios),
        "spread": [min(ratios), max(ratios)],
        "reps": len(ratios),
        "goal": goal,
    }


def figures(pair: Pair, model: str, runs: dict) -> list[dict]:
    o, b = runs["ours"], runs["bare"]
    n = min(len(o), len(b))
    o, b = o[:n], b[:n]
    per = {"token": 1e3, "pair": 1.0, "episode": 1.0, "response": 1.0}[pair.unit]
    unit = {"token": "ms/token", "pair": "s/pair", "episode": "s/episode", "response": "s/response"}[
        pair.unit
    ]
    baseline = {"sft": "TRL SFTTrainer", "reward": "TRL RewardTrainer", "dpo": "TRL DPOTrainer",
                "ppo": "TRL PPOTrainer", "rloo": "TRL RLOOTrainer", "generate": "model.generate"}[pair.kind]  # fmt: skip
    tag = f"{pair.name} ({model})"
    out = [
        spread_figure(
            f"{tag}: time per {pair.unit} vs {baseline}",
            [per * seconds(pair.kind, r) / units(pair, r) for r in o],
            [per * seconds(pair.kind, r) / units(pair, r) for r in b],
            unit,
            pair.goal if model == "smollm2" else "-",
        ),
        spread_figure(
            f"{tag}: peak RSS vs {baseline}",
            [r["peak_rss_kb"] / 1024 for r in o],
            [r["peak_rss_kb"] / 1024 for r in b],
            "MiB",
            "<= 1.1x" if model == "smollm2" else "-",
        ),
    ]
    if pair.kind == "generate":
        out.append({"figure": f"{tag}: same work: generated tokens (greedy, identical ids: "
                    f"{o[0]['generated_digest'] == b[0]['generated_digest']})", "ours": o[0]["generated_tokens"],
                    "baseline": b[0]["generated_tokens"], "unit": "tokens",
                    "ratio": o[0]["generated_tokens"] / b[0]["generated_tokens"], "goal": "= 1"})  # fmt: skip
    else:
        # DPO's and RLOO's first loss is the same on any data (bench/_peer_hooks.py FIRST_LOGS): their row shows
        # the first batch's mean chosen log-probability / mean reward; same_work compares the loss too.
        what, key, unit = {"ppo": ("first update's value loss", "loss/value_avg", ""),
                           "dpo": ("first batch's chosen log-prob", "logps/chosen", "nats"),
                           "rloo": ("first update's mean reward", "reward", "")}.get(
                               pair.kind, ("first-step loss", None, "nats"))  # fmt: skip
        ours, base = (
            (o[0]["first_logs"][key], b[0]["first_logs"][key])
            if key
            else (o[0]["first_loss"], b[0]["first_loss"])
        )
        tokens = "generated" if pair.kind in ("ppo", "rloo") else "trained"
        out.append({"figure": f"{tag}: same work: {what} ({o[0]['trained_tokens']} vs {b[0]['trained_tokens']} "
                    f"{tokens} tokens)", "ours": ours, "baseline": base, "unit": unit,
                    "ratio": ours / base if base else None, "goal": "within 1e-4"})  # fmt: skip
    return out


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="reduced sizes and pairs (make bench-quick)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per figure (>= 3 for a spread)")
    p.add_argument("--model", choices=["demo", "smollm2", "both"], default="both")
    p.add_argument("--only", action="append", help="run only this pair (repeatable; default: all)")
    a = p.parse_args()
    # Both sides get the same OpenMP wait policy: the one the kit would pick for this machine now (a value in
    # the environment wins), so the kit's choice of it is not what a ratio measures.
    from rlhf._omp import choose_wait_policy

    choose_wait_policy()
    WORK.mkdir(parents=True, exist_ok=True)
    mode = "quick" if a.quick else "full"
    models = ["demo", "smollm2"] if a.model == "both" else [a.model]
    only = set(a.only or ())
    if only - {p.name for p in PAIRS}:
        print(f"peers: no pair named {sorted(only - {p.name for p in PAIRS})}", file=sys.stderr)
        return 2
    results, failures, notes, raw = [], [], [], []
    for model in models:
        chain = None
        for pair in PAIRS:
            wanted = pair.quick_models if a.quick else pair.models
            if model not in wanted or (only and pair.name not in only):
                continue
            reason = pair.available()
            if reason:
                notes.append(f"{pair.name} ({model}): {reason}")
                continue
            if chain is None:
                print(f"peers: preparing the {model} chain ...", flush=True)
                chain = demo_chain_for_peers() if model == "demo" else smollm2_chain()
                if chain is None:
                    notes.append(
                        f"{model}: skipped, the SmolLM2 GGUF is not installed (make setup installs it)"
                    )
                    break
            print(f"peers: {pair.name} ({model}) ...", flush=True)
            figs, problems, runs = measure(pair, chain, SIZES[model][mode], a.reps)
            results += figs
            raw.append({"pair": pair.name, "model": model, "size": SIZES[model][mode], **runs})
            if problems:
                failures.append(f"{pair.name} ({model}): " + "; ".join(problems))
    for note in notes:
        results.append(
            {"figure": note, "ours": None, "baseline": None, "unit": "", "ratio": None, "goal": "-"}
        )
    if not results:
        print("peers: no pair for this model and mode", file=sys.stderr)
        return 2
    report("peers (quick)" if a.quick else "peers", results, a.json)
    if a.json:  # every run's record (seconds, tokens, losses, settings, RSS), beside the figures
        from rlhf.io import atomic_write_json

        atomic_write_json(Path(a.json).with_suffix(".runs.json"), raw)
    for f in failures:
        print(f"peers: not the same work, so no ratio holds: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
