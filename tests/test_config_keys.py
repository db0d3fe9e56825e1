"""Config keys TRL users already know (issue 16, point 4): use_peft, dataset_name and PPO's model paths as other
names of the kit's keys; lora_target_modules and report_to as a YAML list, a comma string or several flag words;
trackers as pip extras; old key names refused with the new one."""

from __future__ import annotations

import dataclasses
import importlib.util
import typing

import pytest
import yaml
from conftest import REPO, run_cli

from dpo.config import DPOStageConfig
from ppo.config import PPOStageConfig
from reward.config import RewardStageConfig
from rlhf.config import TRACKERS, DatasetOptions, LoraOptions, build_config, parse_config
from rlhf.errors import UserError
from rloo.config import RLOOStageConfig
from sft.config import SFTStageConfig

STAGES = [
    (SFTStageConfig, "data_path"),
    (RewardStageConfig, "pairs_path"),
    (PPOStageConfig, "prompts_path"),
    (DPOStageConfig, "pairs_path"),
    (RLOOStageConfig, "prompts_path"),
]


def from_yaml(tmp_path, config_class, values: dict):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(values))
    (cfg,) = parse_config([config_class], ["--config", str(path)])
    return cfg


def error_of(config_class, values=None, argv=()) -> str:
    with pytest.raises(UserError) as e:
        parse_config([config_class], list(argv), values=values or {})
    line = e.value.line()
    assert line.startswith("error: ") and "\n" not in line
    return line


@pytest.mark.parametrize("config_class,path_key", STAGES)
def test_use_peft_and_dataset_name_are_trls_names_for_the_kits_keys(tmp_path, config_class, path_key):
    cfg = from_yaml(tmp_path, config_class, {"use_peft": True, "dataset_name": "org/prefs"})
    assert cfg.use_lora is True and cfg.use_peft is True
    assert getattr(cfg, path_key) == "org/prefs" and cfg.dataset_name == "org/prefs"
    # the kit's own names keep working, and the TRL name mirrors them (the manifest and model card read both)
    cfg = from_yaml(tmp_path, config_class, {"use_lora": True, path_key: "data.jsonl"})
    assert (cfg.use_lora, cfg.use_peft, cfg.dataset_name) == (True, True, "data.jsonl")
    # both names with one value: fine; with two: refused, naming the TRL key
    cfg = from_yaml(tmp_path, config_class, {"use_lora": True, "use_peft": True})
    assert cfg.use_lora
    line = error_of(config_class, {"use_peft": True, "use_lora": False})
    assert line.startswith("error: arguments:key 'use_peft': 'use_peft' is TRL's name for 'use_lora'")
    line = error_of(config_class, {"dataset_name": "a.jsonl", path_key: "b.jsonl"})
    assert f"'dataset_name' is TRL's name for '{path_key}' and they differ" in line


@pytest.mark.parametrize("config_class,path_key", STAGES)
def test_every_stage_mixes_in_the_dataset_and_lora_keys_with_their_types(config_class, path_key):
    """DatasetOptions and LoraOptions hold these keys once; a stage that redeclares one for its own help or default
    keeps the block's type, so the key parses alike on every stage."""
    hints = typing.get_type_hints(config_class)
    for block in (DatasetOptions, LoraOptions):
        assert issubclass(config_class, block)
        for name, kind in typing.get_type_hints(block).items():
            assert hints[name] == kind, (config_class.__name__, name)
    names = {f.name for f in dataclasses.fields(config_class)}
    assert {"dataset_config", "dataset_test_split", "use_lora", "lora_target_modules"} <= names


def test_use_peft_as_a_bare_flag_like_trls_scripts():
    (cfg,) = parse_config([SFTStageConfig], ["--use_peft", "--lora_r", "8"])
    assert cfg.use_lora and cfg.lora_r == 8
    line = error_of(SFTStageConfig, argv=["--use_peft", "--use_lora", "false"])
    assert line.startswith("error: command line:--use_peft: 'use_peft' is TRL's name for 'use_lora'")


def test_a_config_built_in_python_resolves_the_other_names():
    assert SFTStageConfig(output_dir="x", use_peft=True).use_lora is True
    assert SFTStageConfig(output_dir="x", dataset_name="d.csv").data_path == "d.csv"
    with pytest.raises(UserError, match="'dataset_name' is TRL's name for 'data_path' and they differ"):
        SFTStageConfig(output_dir="x", dataset_name="a", data_path="b")


def test_ppo_takes_trls_model_path_keys():
    cfg = build_config(PPOStageConfig, {"sft_model_path": "runs/a/sft", "reward_model_path": "runs/a/reward"})
    assert (cfg.sft_path, cfg.reward_path) == ("runs/a/sft", "runs/a/reward")
    cfg = build_config(PPOStageConfig, {"sft_path": "runs/b/sft"})
    assert cfg.sft_model_path == "runs/b/sft"  # mirrored, never TRL's unrelated default (pythia-160m)
    line = error_of(PPOStageConfig, {"reward_model_path": "r1", "reward_path": "r2"})
    assert "'reward_model_path' is TRL's name for 'reward_path'" in line


@pytest.mark.parametrize(
    "given,expected",
    [
        ("all-linear", "all-linear"),
        (["all-linear"], "all-linear"),
        (["q_proj", "v_proj"], ["q_proj", "v_proj"]),
        ("q_proj,v_proj", ["q_proj", "v_proj"]),
        ("q_proj, v_proj", ["q_proj", "v_proj"]),
        (["q_proj"], ["q_proj"]),
        ("model.layers.0.mlp.down_proj", ["model.layers.0.mlp.down_proj"]),
    ],
)
def test_lora_target_modules_as_yaml_list_or_comma_string(tmp_path, given, expected):
    for config_class, _ in STAGES:
        assert (
            from_yaml(tmp_path, config_class, {"lora_target_modules": given}).lora_target_modules == expected
        )


def test_lora_target_modules_as_flag_words_and_into_peft():
    from rlhf.training import lora_config, lora_config_for

    for argv in (["--lora_target_modules", "q_proj", "v_proj"], ["--lora_target_modules", "q_proj,v_proj"]):
        (cfg,) = parse_config([SFTStageConfig], argv)
        assert cfg.lora_target_modules == ["q_proj", "v_proj"]
        lora = lora_config("CAUSAL_LM", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        assert set(lora.target_modules) == {"q_proj", "v_proj"}
        assert lora_config_for(cfg, "CAUSAL_LM") is None  # use_lora is off
    (cfg,) = parse_config([SFTStageConfig], [])
    assert cfg.lora_target_modules == "all-linear"  # the default survives the flag taking several words


@pytest.mark.parametrize("config_class,path_key", STAGES)
def test_a_stage_configs_lora_keys_make_its_peft_config(config_class, path_key):
    from rlhf.training import lora_config_for

    argv = "--use_peft true --lora_r 4 --lora_alpha 8 --lora_target_modules q_proj,v_proj".split()
    (cfg,) = parse_config([config_class], argv)
    lora = lora_config_for(cfg, "SEQ_CLS")
    assert (lora.task_type, lora.r, lora.lora_alpha, lora.lora_dropout) == ("SEQ_CLS", 4, 8, cfg.lora_dropout)
    assert set(lora.target_modules) == {"q_proj", "v_proj"}


@pytest.mark.parametrize("bad", [[], "", "all-linear,q_proj", [1], ["q_proj", ["v_proj"]], "q proj"])
def test_bad_lora_target_modules_are_refused_naming_the_key(tmp_path, bad):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"lora_target_modules": bad}))
    with pytest.raises(UserError) as e:
        parse_config([SFTStageConfig], ["--config", str(path)])
    assert e.value.line().startswith(f"error: {path}:key 'lora_target_modules': expected")


@pytest.mark.parametrize(
    "given,expected",
    [("none", []), (["none"], []), ("tensorboard", ["tensorboard"]), (["tensorboard"], ["tensorboard"])],
)
def test_report_to_takes_a_string_or_a_list_on_every_stage(tmp_path, given, expected):
    for config_class, _ in STAGES:
        assert from_yaml(tmp_path, config_class, {"report_to": given}).report_to == expected


def test_report_to_as_a_flag():
    (cfg,) = parse_config([RewardStageConfig], ["--report_to", "tensorboard"])
    assert cfg.report_to == ["tensorboard"]
    (cfg,) = parse_config([PPOStageConfig], [])
    assert cfg.report_to == []  # default none


@pytest.mark.parametrize(
    "bad,message",
    [
        ("tensorbord", "expected none, all or trackers among ['tensorboard', 'wandb', 'trackio'"),
        (["none", "tensorboard"], "'none' and 'all' stand alone"),
        ("tensorboard,all", "'none' and 'all' stand alone"),
    ],
)
def test_bad_report_to_is_refused_naming_the_key(bad, message):
    line = error_of(SFTStageConfig, {"report_to": bad})
    assert line.startswith("error: arguments:key 'report_to': ") and message in line


def test_a_tracker_that_is_not_installed_names_the_key_and_the_pip_extra(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a)
    )
    path = tmp_path / "c.yaml"
    path.write_text("report_to: [tensorboard, trackio]\n")
    with pytest.raises(UserError) as e:
        parse_config([SFTStageConfig], ["--config", str(path)])
    assert e.value.line() == (
        f"error: {path}:key 'report_to': tracker 'trackio' is not installed: pip install 'rlhf-kit[trackio]'"
    )
    with pytest.raises(UserError, match=r"key 'report_to': tracker 'trackio' is not installed"):
        SFTStageConfig(output_dir="x", report_to="trackio")  # built in Python: the same check


def test_missing_tracker_through_the_cli_is_one_line_and_exit_2(tmp_path):
    missing = next(
        (name for name, module in TRACKERS.items() if importlib.util.find_spec(module) is None), None
    )
    if missing is None:
        pytest.skip("every tracker is installed here")
    res = run_cli("sft", "--report_to", missing, "--output_dir", tmp_path / "out", check=False, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: command line:--report_to: tracker '{missing}' is not installed: pip install 'rlhf-kit[{missing}]'"
    ]
    assert not (tmp_path / "out").exists()


def test_every_tracker_is_an_optional_extra_not_a_new_default_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras, default = project["optional-dependencies"], " ".join(project["dependencies"])
    for name, module in TRACKERS.items():
        assert any(req.startswith(module) for req in extras[name]), name
        assert any(req.startswith(module) for req in extras["trackers"]), name
    assert "wandb" not in default and "trackio" not in default


@pytest.mark.parametrize(
    "old,new,config_class",
    [
        ("evaluation_strategy", "eval_strategy", SFTStageConfig),
        ("max_seq_length", "max_length", SFTStageConfig),
        ("no_cuda", "use_cpu", RewardStageConfig),
        ("per_gpu_train_batch_size", "per_device_train_batch_size", PPOStageConfig),
        ("overwrite_output_dir", "overwrite", SFTStageConfig),
    ],
)
def test_old_key_names_are_refused_with_the_new_one(tmp_path, old, new, config_class):
    path = tmp_path / "c.yaml"
    path.write_text(f"{old}: 1\n")
    with pytest.raises(UserError) as e:
        parse_config([config_class], ["--config", str(path)])
    assert e.value.line() == (
        f"error: {path}:key '{old}': unknown config key: renamed, use '{new}' (transformers / TRL's current name)"
    )
    with pytest.raises(UserError) as e:
        parse_config([config_class], [f"--{old}", "1"])
    assert e.value.line() == (
        f"error: command line:--{old}: unknown option: renamed, use --{new} (transformers / TRL's current name)"
    )


def test_a_renamed_key_this_stage_does_not_have_is_a_plain_unknown_key():
    # PPO has no max_length: no hint pointing at a key it would refuse too
    line = error_of(PPOStageConfig, {"max_seq_length": 10})
    assert "unknown config key (expected a field of PPOStageConfig)" in line


def test_the_kits_old_names_keep_working():
    cfg = build_config(PPOStageConfig, {"demo_prompts": 5, "demo_kinds": "largest"})
    assert (cfg.demo_prompts, cfg.demo_kinds) == (
        5,
        "largest",
    )  # read by rlhf.rollout_prompts when task_* are unset
    assert build_config(SFTStageConfig, {"use_lora": True}).use_lora


def test_the_later_source_wins_between_the_two_names(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data_path: recipe/train.jsonl\nuse_lora: true\n")
    (cfg,) = parse_config([SFTStageConfig], ["--config", str(recipe), "--dataset_name", "org/chat"])
    assert cfg.data_path == cfg.dataset_name == "org/chat"  # the flag beats the recipe, under either name
    cfg = build_config(SFTStageConfig, {"config": recipe, "dataset_name": "mine.csv", "use_peft": False})
    assert (cfg.data_path, cfg.use_lora) == ("mine.csv", False)  # Python values beat the recipe too
    recipe.write_text("dataset_name: org/chat\n")
    (cfg,) = parse_config([SFTStageConfig], ["--config", str(recipe), "--data_path", "local.jsonl"])
    assert cfg.data_path == cfg.dataset_name == "local.jsonl"
