"""Issue 20, points 2 and 3: every reader is total and every config value is checked against its domain.

Readers (rlhf/data.py, reward/data.py, the YAML configs): JSON that Python's json accepts but that breaks later code
(nesting deeper than MAX_DEPTH, lone surrogates, NaN / overflowing numbers, duplicate keys) is refused with one
UserError naming the file, the row and the key. Configs: an out-of-domain value is refused at parse time, naming
the flag or the YAML key and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf.data import MAX_DEPTH, load_instructions, read_records
from rlhf.errors import UserError

GOOD = {"instruction": "Pick the largest number.", "input": "3, 8, 5", "output": "8"}


def refusal(read, path) -> str:
    with pytest.raises(UserError) as e:
        read(path)
    line = e.value.line()
    assert "\n" not in line
    return line


# (file name, text, expected line after "error: <path>")
JSON_CASES = [
    ("deep.jsonl", json.dumps(GOOD) + '\n{"instruction": ' + "[" * 5000 + "]" * 5000 + "}\n",
     f":line 2: nested more than {MAX_DEPTH} levels deep"),
    ("deep.json", "[" + json.dumps(GOOD) + ',\n{"output": ' + "[" * 5000 + "]" * 5000 + "}]",
     f":line 2: nested more than {MAX_DEPTH} levels deep"),
    ("deep_field.json", "[" + json.dumps(GOOD) + ',\n{"output": ' + "[" * 80 + "]" * 80 + "}]",
     f":row 2: key 'output': nested more than {MAX_DEPTH} levels deep"),
    ("surrogate.jsonl", '{"instruction": "x \\ud800 y", "output": "z"}\n',
     ":line 1: key 'instruction': text holds a lone surrogate U+D800 at character 3"),
    ("surrogate_key.json", '[{"instruction": "x", "output": "y", "\\udc00": 1}]',
     ":row 1: a key holds a lone surrogate U+DC00"),
    ("duplicate.jsonl", '{"instruction": "a", "output": "b", "output": "c"}\n',
     ":line 1: key 'output': duplicate key 'output'"),
    ("duplicate_nested.json", '[{"instruction": "a", "output": "b", "meta": {"k": 1, "k": 2}}]',
     ":row 1: key 'meta': duplicate key 'k'"),
    ("nan.jsonl", '{"instruction": "a", "output": "b", "score": NaN}\n', ":line 1: key 'score': NaN is not"),
    ("overflow.jsonl", '{"instruction": "a", "output": "b", "score": 1e999}\n',
     ":line 1: key 'score': number 1e999 is out of range"),
    ("huge_int.jsonl", '{"instruction": "a", "output": "b", "n": ' + "9" * 5000 + "}\n",
     ":line 1: key 'n': integer"),
]  # fmt: skip


@pytest.mark.parametrize("name,text,where", JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_instruction_reader_refuses_what_json_accepts_but_later_code_cannot_use(name, text, where, tmp_path):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert refusal(load_instructions, path).startswith(f"error: {path}{where}")


def test_valid_unicode_big_numbers_and_shallow_nesting_still_read(tmp_path):
    path = tmp_path / "ok.jsonl"
    row = {**GOOD, "output": "8 \U0001f600 \ud55c", "id": 2**62, "score": -1.5e300, "meta": [[{"a": [1]}]]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")  # ensure_ascii: the emoji as a surrogate pair
    (got,) = read_records(path)
    assert got["output"] == row["output"] and got["id"] == 2**62 and got["meta"] == row["meta"]
    assert type(got) is dict and type(got["meta"][0][0]) is dict


def test_preference_reader_refuses_nan_margin_and_surrogates(tmp_path):
    from reward.data import load_preferences

    pair = {"instruction": "a", "chosen": "b", "rejected": "c"}
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(pair) + "\n" + json.dumps({**pair, "margin": float("nan")}) + "\n")
    assert refusal(load_preferences, path).startswith(f"error: {path}:line 2: key 'margin': NaN is not")
    path.write_text(json.dumps({**pair, "chosen": "\ud800"}) + "\n")
    assert refusal(load_preferences, path).startswith(
        f"error: {path}:line 1: key 'chosen': text holds a lone"
    )
    deep = {**pair, "chosen": [{"role": "user", "content": "x"}]}
    text = json.dumps(deep).replace('"x"', "[" * 3000 + "]" * 3000)
    path.write_text(text + "\n")
    assert refusal(load_preferences, path).startswith(f"error: {path}:line 1: nested more than")


def test_label_pairs_reader_refuses_surrogates(tmp_path):
    from rlhf.label.pairs import load_pairs

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"id": "p0", "instruction": "a", "responses": ["x", "y \udfff"]}) + "\n")
    assert refusal(load_pairs, path).startswith(f"error: {path}:line 1: key 'responses': text holds a lone")


YAML_CASES = [
    ("dup.yaml", "learning_rate: 1.0e-4\nseed: 1\nlearning_rate: 2.0e-4\n", ":line 3: duplicate key 'learning_rate'"),
    ("deep.yaml", "lora_target_modules: " + "[" * 3000 + "]" * 3000 + "\n", ": nested more than"),
    ("surrogate.yaml", 'output_dir: "runs/\\ud800"\n', ":key 'output_dir': text holds a lone surrogate"),
    ("nan.yaml", "learning_rate: .nan\n", ":key 'learning_rate': nan is not a finite number"),
    ("huge.yaml", "seed: " + "9" * 5000 + "\n", ": unreadable value"),
]  # fmt: skip


@pytest.mark.parametrize("name,text,where", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_config_reader_is_total(name, text, where, tmp_path):
    from rlhf.config import load_yaml_mapping

    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert refusal(load_yaml_mapping, path).startswith(f"error: {path}{where}")


def parse(cls, *argv):
    from rlhf.config import parse_config

    return parse_config([cls], [str(a) for a in argv], prog="test")


DOMAIN_FLAGS = {
    "sft": [("--learning_rate", "-1e-4", "a finite number > 0"), ("--learning_rate", "nan", "a finite number > 0"),
            ("--max_length", "-5", "an integer >= 1"), ("--per_device_train_batch_size", "0", "an integer >= 1"),
            ("--gradient_accumulation_steps", "0", "an integer >= 1"), ("--num_train_epochs", "inf", "a finite number > 0"),
            ("--eval_fraction", "1.5", "a number in [0, 1)"), ("--lora_dropout", "-0.1", "a number in [0, 1)"),
            ("--warmup_steps", "2.5", "a share in [0, 1) or a whole number"), ("--weight_decay", "-1", "a finite number >= 0"),
            ("--save_steps", "0", "a share in (0, 1)"), ("--logging_steps", "-2", "a share in (0, 1)"),
            ("--seed", "-1", "an integer in [0, 2**32 - 1]"), ("--max_steps", "0", "-1 (train num_train_epochs)"),
            ("--template", "vicuna", "one of ['alpaca', 'chat']")],
    "reward": [("--max_pairs", "0", "an integer >= 1"), ("--center_rewards_coefficient", "-1", "a finite number >= 0"),
               ("--per_device_eval_batch_size", "0", "an integer >= 1"), ("--adam_beta2", "1", "a number in [0, 1)")],
    "ppo": [("--kl_coef", "-0.1", "a finite number >= 0"), ("--num_ppo_epochs", "0", "an integer >= 1"),
            ("--response_length", "0", "an integer >= 1"), ("--temperature", "0", "a finite number > 0"),
            ("--gamma", "1.5", "a number in [0, 1]"), ("--kl_stop", "-1", "a finite number > 0"),
            ("--total_episodes", "0", "an integer >= 1"), ("--num_mini_batches", "0", "an integer >= 1")],
}  # fmt: skip


def _cls(stage):
    from ppo.config import PPOStageConfig
    from reward.config import RewardStageConfig
    from sft.config import SFTStageConfig

    return {"sft": SFTStageConfig, "reward": RewardStageConfig, "ppo": PPOStageConfig}[stage]


@pytest.mark.parametrize(
    "stage,flag,value,expect",
    [(s, *case) for s, cases in DOMAIN_FLAGS.items() for case in cases],
    ids=[f"{s}{c[0]}={c[1]}" for s, cases in DOMAIN_FLAGS.items() for c in cases],
)
def test_out_of_domain_flag_is_refused_naming_the_flag(stage, flag, value, expect):
    with pytest.raises(UserError) as e:
        parse(_cls(stage), f"{flag}={value}")  # "=": argparse reads a bare -1 as a flag
    assert e.value.line().startswith(f"error: command line:{flag}: expected {expect}"), e.value.line()


def test_out_of_domain_yaml_value_names_the_file_and_key(tmp_path):
    from sft.config import SFTStageConfig

    path = tmp_path / "sft.yaml"
    path.write_text("learning_rate: -0.5\nmax_length: 64\n")
    with pytest.raises(UserError) as e:
        parse(SFTStageConfig, "--config", path)
    assert e.value.line() == f"error: {path}:key 'learning_rate': expected a finite number > 0, got -0.5"
    path.write_text("max_length: null\n")  # null only where the field admits it
    with pytest.raises(UserError, match="key 'max_length': expected an integer >= 1, got None"):
        parse(SFTStageConfig, "--config", path)
    from reward.config import RewardStageConfig

    assert parse(RewardStageConfig, "--config", path)[0].max_length is None


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    from sft.config import SFTStageConfig

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="expected a directory path"):
        parse(SFTStageConfig, "--output_dir", f)


def test_every_shipped_recipe_is_inside_its_domains():
    """All of configs/*/{sft,reward,ppo}*.yaml, GPU recipes included: checked on the parsed values (building their
    TrainingArguments would refuse bf16 on a CPU-only machine)."""
    from rlhf.config import _optional_fields, _Parser, domain_problems, load_yaml_mapping

    repo = Path(__file__).resolve().parents[1]
    checked = 0
    for stage in ("sft", "reward", "ppo"):
        cls = _cls(stage)
        for path in sorted(repo.glob(f"configs/*/{stage}*.yaml")):
            parser = _Parser([cls], "test")
            values = load_yaml_mapping(path)
            values.pop("env", None)
            parser.set_defaults_with_config(**values)
            namespace, _ = parser.parse_known_args([])
            assert domain_problems(vars(namespace), _optional_fields([cls])) == [], path
            checked += 1
    assert checked >= 15


def test_check_config_covers_configs_built_in_python():
    from rlhf.config import check_config
    from sft.config import SFTStageConfig

    (cfg,) = parse(SFTStageConfig)
    check_config(cfg)
    cfg.learning_rate = float("nan")
    with pytest.raises(UserError, match="key 'learning_rate': expected a finite number > 0, got nan"):
        check_config(cfg)


def test_build_config_refuses_an_out_of_range_value_naming_its_key():
    """Python callers get the same one-line refusal as YAML and flags, naming where the value came from."""
    from conftest import REPO

    import sft
    from rlhf.config import build_config
    from rlhf.errors import UserError

    with pytest.raises(UserError) as e:
        build_config(
            sft.SFTStageConfig, {"config": REPO / "configs/demo/sft.yaml", "per_device_train_batch_size": 0}
        )
    assert e.value.line() == (
        "error: arguments:key 'per_device_train_batch_size': expected an integer >= 1, got 0"
    )
