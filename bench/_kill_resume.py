"""The tiny stage runs that fault injection kills and resumes, and what "the same result" means for them: shared by
bench/faults.py and the tests (tests/_faults.py, tests/test_resume.py).

Every stage command here is the tiny, seconds-scale version of the demo stage, saving a checkpoint every few steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What "the same result" means per stage: the final metrics a resumed run must reproduce (to 1e-4).
COMPARED = {
    "sft": ("eval_loss",),
    "reward": ("eval_accuracy", "reward_mean", "reward_std"),
    "ppo": ("objective_scores", "objective_kl", "objective_rlhf_reward", "loss_value_avg", "episodes"),
}


def write_prefs(path: Path, n: int = 200, seed: int = 7) -> Path:
    """Preference pairs on demo tasks: the bare correct answer over a wrong one (no sampling, so any size)."""
    from rlhf.io import atomic_write_jsonl
    from rlhf.tasks.demo import _wrong_answer, make_tasks

    rng = random.Random(seed)
    rows = [
        {
            "instruction": t.instruction,
            "input": t.input,
            "chosen": t.answer,
            "rejected": _wrong_answer(t, rng),
        }
        for t in make_tasks(n, seed, ("largest", "smallest"))
    ]
    atomic_write_jsonl(path, rows)
    return path


def stage_args(stage: str, chain: dict, out: Path) -> list[str]:
    """`rlhf <stage> ...` at tiny size with frequent checkpoints. chain: base, sft_data, sft, prefs, reward."""
    common = ["--output_dir", out, "--quiet", "true", "--seed", "0", "--keep_checkpoints", "false"]
    if stage == "sft":
        return ["sft", "--config", REPO / "configs/demo/sft.yaml", "--model_name_or_path", chain["base"],
                "--data_path", chain["sft_data"], "--max_steps", "18", "--save_steps", "6",
                "--eval_fraction", "0.1", *common]  # fmt: skip
    if stage == "reward":
        return ["reward", "--config", REPO / "configs/demo/reward.yaml", "--sft_path", chain["sft"],
                "--pairs_path", chain["prefs"], "--max_steps", "18", "--per_device_train_batch_size", "8",
                "--save_steps", "6", *common]  # fmt: skip
    if stage == "ppo":
        return ["ppo", "--config", REPO / "configs/demo/ppo.yaml", "--sft_path", chain["sft"],
                "--reward_path", chain["reward"], "--total_episodes", "96", "--per_device_train_batch_size", "16",
                "--local_rollout_forward_batch_size", "16", "--num_ppo_epochs", "1", "--demo_prompts", "40",
                "--num_eval_prompts", "8", "--num_sample_generations", "2", "--response_length", "12",
                "--kl_stop", "null", "--save_steps", "2", "--save_total_limit", "2", *common]  # fmt: skip
    raise ValueError(stage)


def manifest(out: Path) -> dict:
    return json.loads((Path(out) / "rlhf_stage.json").read_text())


def compared_metrics(out: Path, stage: str) -> dict:
    m = manifest(out)["metrics"]
    return {k: m[k] for k in COMPARED[stage] if k in m}


def max_weight_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between the saved weights of two stage dirs (same keys required)."""
    from safetensors.torch import load_file

    name = (
        "adapter_model.safetensors"
        if (Path(a) / "adapter_model.safetensors").is_file()
        else "model.safetensors"
    )
    wa, wb = load_file(Path(a) / name), load_file(Path(b) / name)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
