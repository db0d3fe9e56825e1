"""The `rlhf` command: one subcommand per job, each implemented by a `cli(argv)` in its own module.

Modules are imported only when their command runs, so `rlhf --help` is instant and a stage's heavy imports
never slow down another command. This is the one place in `rlhf` that names the stage packages (sft, reward,
ppo, dpo, rloo): `STAGES` says where each stage's Python API lives, and the pipeline asks `stage_api` for it.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable

from rlhf.runtime import configure_process

COMMANDS: dict[str, tuple[str, str]] = {
    "tasks": ("rlhf.demo:tasks_cli", "write demo instruction tasks as Alpaca json"),
    "demo-model": ("rlhf.demo:model_cli", "build the tiny demo tokenizer + model as an HF dir"),
    "sft": ("sft.train:cli", "stage 1: Alpaca-style supervised fine-tuning"),
    "pairs": ("rlhf.pairs:cli", "sample candidate responses from a checkpoint"),
    "annotate": ("rlhf.annotators:cli", "label pairs with simulated annotators"),
    "reward": ("reward.train:cli", "stage 2: train a reward model on preference pairs"),
    "score": ("reward.score:cli", "score pairs (accuracy) or one response with a reward model"),
    "ppo": ("ppo.train:cli", "stage 3: PPO against the reward model (TRL)"),
    "dpo": ("dpo.train:cli", "DPO on preference pairs from the SFT policy (TRL)"),
    "rloo": ("rloo.train:cli", "RLOO against the reward model (TRL)"),
    "generate": ("rlhf.generate_cli:cli", "generate responses from a checkpoint"),
    "compare": (
        "rlhf.evaluation.compare:cli",
        "compare checkpoints: win-rates, reward, KL, diversity, report",
    ),
    "pipeline": ("rlhf.pipeline:cli", "run the configured chain of steps"),
    "label": ("rlhf.label.cli:cli", "preference labeling web app: serve, export, stats"),
    "inspect": ("rlhf.inspect:cli", "print a checkpoint's lineage"),
    "convert": ("rlhf.convert:cli", "convert a GGUF model file to a safetensors HF dir"),
}


# stage name -> (package, config class, run function): `run(config) -> Stage | None` trains one stage.
STAGES: dict[str, tuple[str, str, str]] = {
    "sft": ("sft", "SFTStageConfig", "run"),
    "reward": ("reward", "RewardStageConfig", "run"),
    "ppo": ("ppo", "PPOStageConfig", "run"),
    "dpo": ("dpo", "DPOStageConfig", "run"),
    "rloo": ("rloo", "RLOOStageConfig", "run"),
}


def stage_api(name: str) -> tuple[type, Callable]:
    """The config class and run function of stage `name` (imported now)."""
    package, config_class, run = STAGES[name]
    module = importlib.import_module(package)
    return getattr(module, config_class), getattr(module, run)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rlhf <command> [options]   (rlhf <command> --help for its options)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    # Library deprecation notices are not actionable for a user running a command, and they would break the
    # one-line error contract; tests and `python -W` still see them.
    if not sys.warnoptions:
        warnings.filterwarnings("ignore", category=FutureWarning)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"error: command line: unknown command {name!r}; expected one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    configure_process()  # before the command's module imports torch: OpenMP reads its settings when torch loads
    module, func = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), func)(rest, prog=f"rlhf {name}")


if __name__ == "__main__":
    sys.exit(main())
