"""The shipped recipes: every YAML under configs/ parses with the parser that reads it, and the recipes agree with
each other. No model is loaded: the hub models these recipes name (facebook/opt-*, meta-llama/*) are not available
offline, and parsing is what a typo breaks. Fast: a few seconds."""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from dpo.config import DPOStageConfig
from ppo.config import PPOStageConfig
from reward.config import RewardStageConfig
from rlhf.config import parse_config
from rloo.config import RLOOStageConfig
from sft.config import SFTStageConfig

CONFIGS = REPO / "configs"
STAGES = {"sft": SFTStageConfig, "reward": RewardStageConfig, "ppo": PPOStageConfig, "dpo": DPOStageConfig,
          "rloo": RLOOStageConfig}  # fmt: skip
CHAIN = ("sft", "reward", "ppo")  # the stages every model recipe folder holds
ACCELERATE = sorted((CONFIGS / "accelerate").glob("*.yaml"))
PIPELINES = sorted(
    {
        *CONFIGS.rglob("pipeline*.yaml"),
        *CONFIGS.rglob("methods*.yaml"),
        *(CONFIGS / "experiments").glob("*.yaml"),
    }
    - set((CONFIGS / "experiments").glob("*_*.yaml"))
)
STAGE_YAMLS = sorted(set(CONFIGS.rglob("*.yaml")) - set(ACCELERATE) - set(PIPELINES))
# Model recipes: a folder per model, each with the full and the LoRA variant of every stage.
RECIPE_DIRS = sorted({p.parent for p in STAGE_YAMLS if p.parent.name not in ("demo", "experiments")})
VARIANTS = {"": False, "_lora": True}


def stage_of(path: Path) -> str:
    """sft.yaml, sft_lora.yaml, constraints_sft.yaml -> sft: a stage file is named after the stage that reads it."""
    parts = path.stem.split("_")
    return next((p for p in parts if p in STAGES), parts[0])


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def parse_recipe(path: Path):
    argv = ["--config", str(path)]
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    import torch

    if values.get("bf16") and not torch.cuda.is_available():
        # GPU recipes set bf16; TrainingArguments refuses bf16 without a GPU unless told the run is on CPU.
        # That is a fact about this machine, not the file.
        argv += ["--use_cpu", "true"]
    (cfg,) = parse_config([STAGES[stage_of(path)]], argv, prog=f"rlhf {stage_of(path)}")
    return cfg, values


def plain(value):
    return value.value if isinstance(value, Enum) else value


def test_every_stage_yaml_is_named_after_its_stage():
    assert len(STAGE_YAMLS) >= 3 + 6 * 4, [rel(p) for p in STAGE_YAMLS]  # demo + 4 models x 6 recipes
    assert {stage_of(p) for p in STAGE_YAMLS} == set(STAGES), [rel(p) for p in STAGE_YAMLS]


@pytest.mark.parametrize("path", STAGE_YAMLS, ids=rel)
def test_kept_checkpoints_are_all_kept(path):
    """keep_checkpoints is for compare's checkpoint curve, which wants every checkpoint: a save_total_limit would
    leave it the newest 2 (the trainers' default), as constraints_rloo.yaml once did."""
    values = yaml.safe_load(path.read_text(encoding="utf-8"))  # the file's own keys; parsing is tested below
    if values.get("keep_checkpoints"):
        assert "save_total_limit" in values and values["save_total_limit"] is None, (
            f"{rel(path)}: keep_checkpoints needs save_total_limit: null"
        )


@pytest.mark.parametrize("stage", ["rloo", "ppo"])
def test_a_run_keeping_checkpoints_under_a_limit_is_warned_at_its_start(stage, capsys):
    """A user's own config with keep_checkpoints and the trainer's save_total_limit would find only the newest N
    checkpoints at the end of the run: it is told at the start, on stderr; with no limit nothing is said."""
    from rlhf.lifecycle import warn_limited_checkpoints

    argv = ["--config", str(CONFIGS / "experiments" / f"constraints_{stage}.yaml")]
    (cfg,) = parse_config([STAGES[stage]], argv + ["--keep_checkpoints", "true"], prog=f"rlhf {stage}")
    assert cfg.save_total_limit is None
    warn_limited_checkpoints(stage, cfg)
    assert capsys.readouterr().err == ""
    (cfg,) = parse_config([STAGES[stage]], argv + ["--keep_checkpoints", "true", "--save_total_limit", "2"])
    warn_limited_checkpoints(stage, cfg)
    assert capsys.readouterr().err == (
        f"{stage}: warning: keep_checkpoints keeps only the newest 2 checkpoint-N dirs (save_total_limit: 2); set "
        "save_total_limit: null to keep every one\n"
    )
    cfg.keep_checkpoints = False  # the checkpoints are removed at the end anyway
    warn_limited_checkpoints(stage, cfg)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("path", STAGE_YAMLS, ids=rel)
def test_stage_yaml_parses_and_every_value_lands(path):
    cfg, values = parse_recipe(path)
    assert cfg.config_path == str(path)
    for key, value in values.items():
        got = plain(getattr(cfg, key))
        assert got == value or str(got) == str(value), f"{rel(path)}: {key} = {value!r} became {got!r}"


@pytest.mark.parametrize("folder", RECIPE_DIRS, ids=rel)
def test_model_recipe_is_a_chain(folder):
    """sft -> reward -> ppo, full and LoRA: each stage reads the output_dir of the one before; LoRA files use LoRA."""
    assert {p.stem for p in folder.glob("*.yaml")} == {s + v for s in CHAIN for v in VARIANTS}
    for suffix, lora in VARIANTS.items():
        sft, _ = parse_recipe(folder / f"sft{suffix}.yaml")
        reward, _ = parse_recipe(folder / f"reward{suffix}.yaml")
        ppo, _ = parse_recipe(folder / f"ppo{suffix}.yaml")
        assert (sft.use_lora, reward.use_lora, ppo.use_lora) == (lora, lora, lora)
        assert reward.sft_path == ppo.sft_path == sft.output_dir
        assert ppo.reward_path == reward.output_dir
        assert ppo.prompts_path and sft.data_path and reward.pairs_path


def test_recipes_write_to_distinct_dirs():
    outs = [parse_recipe(p)[0].output_dir for p in STAGE_YAMLS]
    assert len(outs) == len(set(outs)), sorted(outs)


@pytest.mark.parametrize("path", ACCELERATE, ids=rel)
def test_accelerate_config_loads_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert cfg.num_processes >= 2 and cfg.num_machines == 1
    ds_file = (cfg.deepspeed_config or {}).get("deepspeed_config_file")
    if ds_file:  # paths in these files are relative to the repository root, where users launch
        ds = json.loads((REPO / ds_file).read_text())
        stage = 3 if "zero3" in path.stem else 2
        assert ds["zero_optimization"]["stage"] == stage


@pytest.mark.parametrize("path", PIPELINES, ids=rel)
def test_pipeline_yaml_loads_and_names_existing_stage_configs(path):
    from rlhf.pipeline import load_pipeline_config

    cfg = load_pipeline_config(path)  # refuses a missing config of a stage the pipeline runs
    for stage in (s for s in STAGES if s in cfg):
        assert (REPO / cfg[stage]["config"]).is_file()


def test_every_config_path_the_docs_mention_exists():
    """Launch commands in README.md and in the configs' comments name real files (a renamed recipe breaks them)."""
    pattern = re.compile(r"configs/[\w./-]+\.(?:yaml|json)")
    sources = [REPO / "README.md", *CONFIGS.rglob("*.yaml")]
    mentioned = {m for src in sources for m in pattern.findall(src.read_text(encoding="utf-8"))}
    assert len(mentioned) > 10
    missing = sorted(m for m in mentioned if not (REPO / m).is_file())
    assert not missing, missing
