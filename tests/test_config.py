"""Stage configs: YAML + command-line overrides, the error contract, and the shipped SFT recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhf.config import parse_config
from rlhf.errors import UserError
from sft.config import SFTStageConfig

REPO = Path(__file__).resolve().parents[1]
BAD = Path(__file__).parent / "data" / "bad"
DEMO = REPO / "configs" / "demo" / "sft.yaml"
ALPACA = REPO / "configs" / "alpaca" / "sft.yaml"


def parse(*argv) -> SFTStageConfig:
    (cfg,) = parse_config([SFTStageConfig], [str(a) for a in argv], prog="rlhf sft")
    return cfg


def error_line(*argv) -> str:
    with pytest.raises(UserError) as e:
        parse(*argv)
    line = e.value.line()
    assert line.startswith("error: ") and "\n" not in line
    return line


def test_cli_overrides_yaml_which_overrides_defaults():
    import yaml

    values = yaml.safe_load(DEMO.read_text())
    yaml_only = parse("--config", DEMO)
    assert values["learning_rate"] != 2e-5  # the YAML sets it (the dataclass default is Alpaca's 2e-5)
    assert yaml_only.learning_rate == values["learning_rate"]
    assert yaml_only.lora_r == 16  # not in the YAML: the dataclass default
    assert yaml_only.config_path == str(DEMO)
    # `rlhf sft --config configs/demo/sft.yaml --learning_rate 1e-4`: the flag wins, wherever it stands
    assert parse("--config", DEMO, "--learning_rate", "1e-4").learning_rate == 1e-4
    assert parse("--learning_rate", "1e-4", "--config", DEMO).learning_rate == 1e-4
    both = parse("--config", DEMO, "--max_length", "64", "--padding_free", "true", "--seed", "3")
    assert (both.max_length, both.padding_free, both.seed) == (64, True, 3)
    # the rest of the YAML stays
    assert (both.num_train_epochs, both.per_device_train_batch_size) == (
        values["num_train_epochs"],
        values["per_device_train_batch_size"],
    )
    assert parse().learning_rate == 2e-5 and parse().config_path is None


def test_unknown_yaml_key_names_key_and_file():
    line = error_line("--config", BAD / "config_unknown_key.yaml")
    assert line.startswith(f"error: {BAD / 'config_unknown_key.yaml'}:key 'learnig_rate': unknown config key")


def test_wrong_typed_yaml_value_names_key_and_file(tmp_path):
    line = error_line("--config", BAD / "config_wrong_type.yaml")
    assert line == (
        f"error: {BAD / 'config_wrong_type.yaml'}:key 'num_train_epochs': expected float, got 'three'"
    )
    cases = {
        "max_length: 12.5": ("max_length", "expected int"),
        "padding_free: maybe": ("padding_free", "expected true or false"),
        "overwrite: 1": ("overwrite", "expected true or false"),
        "learning_rate: true": ("learning_rate", "expected a number"),
    }
    for text, (key, expected) in cases.items():
        path = tmp_path / f"{key}.yaml"
        path.write_text(text + "\n", encoding="utf-8")
        assert error_line("--config", path).startswith(f"error: {path}:key '{key}': {expected}")


def test_wrong_typed_flag_and_unknown_flag_name_the_command_line():
    line = error_line("--config", DEMO, "--num_train_epochs", "three")
    assert line.startswith("error: command line:--num_train_epochs: invalid float value: 'three'")
    line = error_line("--config", DEMO, "--learnig_rate", "1e-4")
    assert line.startswith("error: command line:--learnig_rate: unknown option")
    assert str(DEMO) not in line  # the YAML file is fine; the flag is the mistake


def test_config_file_errors(tmp_path):
    assert (
        error_line("--config", tmp_path / "nope.yaml")
        == f"error: {tmp_path / 'nope.yaml'}: config file not found"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1e-4\nmax_length: [1, 2\n", encoding="utf-8")
    assert error_line("--config", bad).startswith(f"error: {bad}:line ")
    listing = tmp_path / "list.yaml"
    listing.write_text("- learning_rate\n", encoding="utf-8")
    assert "expected a YAML mapping" in error_line("--config", listing)
    assert error_line("--config") == "error: command line: --config needs a YAML file path"


def test_alpaca_recipe():
    cfg = parse("--config", ALPACA)
    assert cfg.model_name_or_path == "facebook/opt-125m"
    assert cfg.data_path == "data/alpaca_data.json"
    assert cfg.learning_rate == 2e-5
    assert cfg.num_train_epochs == 3
    assert cfg.lr_scheduler_type.value == "cosine"
    assert cfg.warmup_steps == 0.03 and cfg.get_warmup_steps(1000) == 30  # a float < 1 is a ratio
    assert cfg.weight_decay == 0.0
    assert cfg.max_length == 512
    assert cfg.per_device_train_batch_size == 4 and cfg.gradient_accumulation_steps == 8
    assert cfg.template == "alpaca" and not cfg.padding_free and not cfg.use_lora
    assert (
        cfg.train_sampling_strategy == "group_by_length"
    )  # bench/sft_throughput.py: fastest correct for OPT
    assert cfg.output_dir == "runs/alpaca/sft"


def test_demo_recipe_parses():
    cfg = parse("--config", DEMO)
    assert cfg.max_length == 128 and cfg.lr_scheduler_type.value == "cosine" and cfg.seed == 0
