"""PPO: (1) time per episode of our stage vs a bare TRL PPOTrainer script on the same models, prompts and config
(goal <= 1.05x); (2) peak RSS of LoRA mode vs full mode on the same config (goal <= 0.6x). Each variant runs in
its own process so peak RSS is its own."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, demo_chain, parser, report

SHARED = {
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


OURS = """
import resource, sys, json
from rlhf.cli import main
from rlhf import checkpoint
rc = main(sys.argv[1:])
assert rc == 0
out = sys.argv[sys.argv.index("--output_dir") + 1]
print("TRAIN_SECONDS", checkpoint.require(out, kind="ppo").metrics["train_seconds"])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    a = parser(__doc__).parse_args()
    from rlhf.tasks import make_tasks
    from rlhf.templates import format_prompt

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sft, _, rm = demo_chain(tmp)
        tasks = make_tasks(SHARED["total_episodes"], 101, ("largest", "smallest"))
        (tmp / "ppo_prompts.json").write_text(json.dumps([t.to_row() for t in tasks]))
        (tmp / "bare_prompts.json").write_text(
            json.dumps([format_prompt(t.instruction, t.input) for t in tasks])
        )
        flags = [x for k, v in SHARED.items() for x in (f"--{k}", str(v))]
        common = [
            "ppo",
            "--config",
            str(REPO / "configs/demo/ppo.yaml"),
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
        bare = run(
            [
                str(REPO / "bench/_bare_ppo.py"),
                str(sft),
                str(rm),
                str(tmp / "bare_prompts.json"),
                str(tmp / "bare"),
                json.dumps(SHARED),
            ]
        )
        ours = run(["-c", OURS, *common, "--output_dir", str(tmp / "ours")])
        lora = run(["-c", OURS, *common, "--output_dir", str(tmp / "lora"), "--use_lora", "true"])
    n = SHARED["total_episodes"]
    report(
        "ppo",
        [
            {
                "figure": "seconds per episode, our stage vs bare TRL",
                "ours": ours["TRAIN_SECONDS"] / n,
                "baseline": bare["TRAIN_SECONDS"] / n,
                "unit": "s/episode",
                "ratio": ours["TRAIN_SECONDS"] / bare["TRAIN_SECONDS"],
                "goal": "<= 1.05x",
            },
            {
                "figure": "peak RSS, LoRA vs full (same config)",
                "ours": lora["PEAK_RSS_KB"] / 1024,
                "baseline": ours["PEAK_RSS_KB"] / 1024,
                "unit": "MiB",
                "ratio": lora["PEAK_RSS_KB"] / ours["PEAK_RSS_KB"],
                "goal": "<= 0.6x",
            },
        ],
        a.json,
    )


if __name__ == "__main__":
    main()
