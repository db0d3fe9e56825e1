"""The Python API: stage configs built from a mapping with the CLI's checks, the stage registry, the pipeline's
plan as data (config objects and typed parameters, defaults from the APIs), and the TRL version guard."""

from __future__ import annotations

import inspect

import pytest
from conftest import REPO

from rlhf.config import build_config, parse_config
from rlhf.errors import UserError

SFT_YAML = REPO / "configs" / "demo" / "sft.yaml"


def test_build_config_matches_the_command_line():
    import sft

    built = build_config(sft.SFTStageConfig, {"config": SFT_YAML, "learning_rate": 1e-4, "quiet": True})
    (parsed,) = parse_config([sft.SFTStageConfig], ["--config", str(SFT_YAML), "--learning_rate", "1e-4",
                                                    "--quiet", "true"])  # fmt: skip
    assert built.learning_rate == parsed.learning_rate == 1e-4 and built.quiet is parsed.quiet is True
    assert built.max_length == parsed.max_length == 128  # from the YAML
    assert built.config_path == parsed.config_path == str(SFT_YAML)


def test_build_config_without_a_file_takes_the_class_defaults_and_none():
    import ppo

    cfg = build_config(ppo.PPOStageConfig, {"kl_stop": None, "total_episodes": 16})
    assert cfg.kl_stop is None and cfg.total_episodes == 16 and cfg.config_path is None
    assert cfg.output_dir == ppo.PPOStageConfig.output_dir


@pytest.mark.parametrize(
    "values, message",
    [
        ({"no_such_key": 1}, "key 'no_such_key': unknown config key (expected a field of SFTStageConfig)"),
        ({"learning_rate": "fast"}, "key 'learning_rate': expected float, got 'fast'"),
        ({"quiet": "yes"}, "key 'quiet': expected true or false, got 'yes'"),
        (
            {"lr_scheduler_type": "sideways"},
            "key 'lr_scheduler_type': invalid value: sideways is not a valid",
        ),
    ],
)
def test_build_config_errors_name_the_source_and_key(values, message):
    import sft

    with pytest.raises(UserError) as e:
        build_config(sft.SFTStageConfig, {"config": SFT_YAML, **values}, source="pipe.yaml (sft)")
    assert e.value.line().startswith(f"error: pipe.yaml (sft):{message}")


def test_stage_registry_gives_each_stages_api():
    from rlhf.cli import STAGES, stage_api

    for name in STAGES:
        config_class, run = stage_api(name)
        module = __import__(name)
        assert module.run is run and getattr(module, config_class.__name__) is config_class
        assert list(inspect.signature(run).parameters) == ["cfg"]


def test_pipeline_plan_is_data_with_the_apis_defaults(tmp_path):
    from rlhf.evaluation.compare import compare
    from rlhf.pairs import write_pairs
    from rlhf.pipeline import Compare, Pairs, StageTraining, load_pipeline_config, plan

    cfg = load_pipeline_config(REPO / "tests" / "data" / "pipeline_tiny.yaml")
    del cfg["compare"]["max_new_tokens"], cfg["pairs"]["max_new_tokens"]
    steps = {s.name: s for s in plan(cfg, tmp_path / "run", seed=3, source="tiny.yaml")}
    assert list(steps) == ["data", "base", "sft", "pairs", "annotate", "reward", "ppo", "compare"]
    assert steps["ppo"].after == ("sft", "reward") and steps["reward"].after == ("sft", "annotate")

    (sft_step,) = steps["sft"].actions
    assert isinstance(sft_step, StageTraining) and sft_step.stage == "sft"
    sft_cfg = sft_step.config
    assert sft_cfg.output_dir == str(tmp_path / "run" / "sft") and sft_cfg.seed == 3
    assert (
        sft_cfg.num_train_epochs == 3 and sft_cfg.overwrite is True
    )  # overrides; a rerun replaces the stage
    assert steps["ppo"].actions[0].config.task_kinds == "largest,smallest"

    (cmp_step,) = steps["compare"].actions
    (pairs_step,) = steps["pairs"].actions
    assert isinstance(cmp_step, Compare) and isinstance(pairs_step, Pairs)
    assert cmp_step.max_new_tokens is None and pairs_step.max_new_tokens is None  # left to the API
    assert inspect.signature(compare).parameters["max_new_tokens"].default == 32
    assert inspect.signature(write_pairs).parameters["max_new_tokens"].default == 32


def test_pipeline_identity_follows_settings_and_dependencies(tmp_path):
    from rlhf.pipeline import load_pipeline_config, plan

    cfg = load_pipeline_config(REPO / "tests" / "data" / "pipeline_tiny.yaml")
    a = {s.name: s for s in plan(cfg, tmp_path, seed=0)}
    cfg["pairs"]["temperature"] = 0.5
    b = {s.name: s for s in plan(cfg, tmp_path, seed=0)}
    same = ["seed=0"]
    assert a["sft"].identity(same) == b["sft"].identity(same)
    assert a["pairs"].identity(same) != b["pairs"].identity(same)
    assert a["pairs"].identity(["seed=0", "x"]) != a["pairs"].identity(["seed=0", "y"])


def test_a_bad_stage_override_is_refused_before_any_step_runs(tmp_path):
    from rlhf.pipeline import run_pipeline

    bad = tmp_path / "bad.yaml"
    text = (REPO / "tests" / "data" / "pipeline_tiny.yaml").read_text()
    bad.write_text(text.replace("overrides: {num_train_epochs: 1,", "overrides: {num_train_epochs: many,"))
    with pytest.raises(UserError) as e:
        run_pipeline(str(bad), tmp_path / "run")
    assert e.value.line().startswith(f"error: {bad} (reward):key 'num_train_epochs': expected float")
    assert not (tmp_path / "run" / "data").exists()


def test_another_trl_version_is_one_clear_error(monkeypatch):
    import trl

    from rlhf.trl_compat import TRL_VERSION, check_trl_version

    check_trl_version()  # the pinned one passes
    monkeypatch.setattr(trl, "__version__", "9.9.9")
    with pytest.raises(UserError) as e:
        check_trl_version()
    assert e.value.line() == (
        f"error: environment: the PPO stage needs trl=={TRL_VERSION} (it overrides internals of TRL's PPOTrainer, "
        f"see rlhf/trl_compat.py), found trl 9.9.9: pip install trl=={TRL_VERSION}"
    )


def test_stage_modules_are_named_only_by_the_cli_dispatch():
    """rlhf/pipeline.py and rlhf/lifecycle.py run stages through the registry, never by name or CLI."""
    for name in ("pipeline.py", "lifecycle.py"):
        text = (REPO / "rlhf" / name).read_text()
        for stage in ("sft", "reward", "ppo"):
            assert f"import {stage}" not in text and f'"{stage}.train' not in text
        assert "rlhf.cli import main" not in text


def test_train_scripts_read_as_recipes():
    for stage in ("sft", "reward", "ppo"):
        lines = (REPO / stage / "train.py").read_text().splitlines()
        assert len(lines) <= 160, (stage, len(lines))
        assert "StageRun(" in "\n".join(lines)
