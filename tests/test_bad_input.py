"""Bad input to `rlhf sft`, run as a user would (a subprocess): exit code 2, exactly one line on stderr
`error: <file>[:<row or key>]: <what>`, no traceback, and no output dir left behind.

The bad files live in tests/data/bad/, one per case. Each run costs one interpreter start plus the stage's imports
(about 5 s on 2 cores): one case per kind of mistake runs by default, the variations are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_cli

from rlhf.io import atomic_write_json
from rlhf.tasks.demo import make_sft_rows

BAD = Path(__file__).parent / "data" / "bad"
DEMO_CONFIG = REPO / "configs" / "demo" / "sft.yaml"

# case id -> (file under tests/data/bad, expected text right after the file name)
CASES = {
    "malformed_json": ("sft_malformed.json", ":line 3: malformed JSON"),
    "missing_output": ("sft_missing_output.jsonl", ":line 2: key 'output': missing"),
    "non_string_output": ("sft_non_string_output.json", ":row 2: key 'output': expected a string, got int"),
    "empty_file": ("sft_empty.json", ": file is empty"),
    "non_utf8": ("sft_non_utf8.jsonl", ":line 2: not valid UTF-8"),
    # More of the same kinds: slow only because each is another ~5 s interpreter start.
    "malformed_jsonl": ("sft_malformed.jsonl", ":line 2: malformed JSON"),
    "missing_instruction": ("sft_missing_instruction.json", ":row 3: key 'instruction': missing"),
    "non_string_input": ("sft_non_string_input.jsonl", ":line 3: key 'input': expected a string, got list"),
    "not_a_list": ("sft_not_a_list.json", ": expected a JSON list of objects, got dict"),
}
SLOW_CASES = {"malformed_jsonl", "missing_instruction", "non_string_input", "not_a_list"}


@pytest.fixture(scope="module")
def good_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "sft.json"
    atomic_write_json(path, make_sft_rows(40, seed=0))
    return path


def run_sft(*args) -> tuple[int, list[str], str]:
    res = run_cli("sft", *args, check=False, timeout=120)
    return res.returncode, res.stderr.splitlines(), res.stdout


def assert_one_error_line(rc: int, lines: list[str], expected_start: str) -> str:
    assert rc == 2, lines
    assert len(lines) == 1, "expected exactly one stderr line, got:\n" + "\n".join(lines)
    line = lines[0]
    assert "Traceback" not in line
    assert line.startswith(expected_start), line
    return line


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW_CASES else []) for c in CASES]
)
def test_bad_data_file(case, demo_base, tmp_path):
    name, where = CASES[case]
    path = BAD / name
    out = tmp_path / "out"
    rc, lines, _ = run_sft("--config", DEMO_CONFIG, "--model_name_or_path", demo_base, "--data_path", path,
                           "--output_dir", out)  # fmt: skip
    assert_one_error_line(rc, lines, f"error: {path}{where}")
    assert not out.exists()


@pytest.mark.slow
def test_bad_eval_data_file(demo_base, good_data, tmp_path):
    path = BAD / "sft_missing_output.jsonl"
    out = tmp_path / "out"
    rc, lines, _ = run_sft("--config", DEMO_CONFIG, "--model_name_or_path", demo_base, "--data_path", good_data,
                           "--eval_data_path", path, "--output_dir", out)  # fmt: skip
    assert_one_error_line(rc, lines, f"error: {path}:line 2: key 'output': missing")
    assert not out.exists()


def test_unknown_config_key(demo_base, good_data, tmp_path):
    path = BAD / "config_unknown_key.yaml"
    out = tmp_path / "out"
    rc, lines, _ = run_sft("--config", path, "--model_name_or_path", demo_base, "--data_path", good_data,
                           "--output_dir", out)  # fmt: skip
    assert_one_error_line(rc, lines, f"error: {path}:key 'learnig_rate': unknown config key")
    assert not out.exists()


@pytest.mark.slow  # also covered in-process by test_config.py
def test_wrong_typed_config_value(demo_base, good_data, tmp_path):
    path = BAD / "config_wrong_type.yaml"
    out = tmp_path / "out"
    rc, lines, _ = run_sft("--config", path, "--model_name_or_path", demo_base, "--data_path", good_data,
                           "--output_dir", out)  # fmt: skip
    assert_one_error_line(rc, lines, f"error: {path}:key 'num_train_epochs': expected float, got 'three'")
    assert not out.exists()


def test_unknown_cli_flag(demo_base, good_data, tmp_path):
    out = tmp_path / "out"
    rc, lines, _ = run_sft("--config", DEMO_CONFIG, "--model_name_or_path", demo_base, "--data_path", good_data,
                           "--output_dir", out, "--learnig_rate", "1e-4")  # fmt: skip
    assert_one_error_line(rc, lines, "error: command line:--learnig_rate: unknown option")
    assert not out.exists()


def test_model_path_does_not_exist(good_data, tmp_path):
    model = tmp_path / "no-such-model"
    out = tmp_path / "out"
    rc, lines, _ = run_sft("--config", DEMO_CONFIG, "--model_name_or_path", model, "--data_path", good_data,
                           "--output_dir", out)  # fmt: skip
    assert_one_error_line(rc, lines, f"error: {model}: model path does not exist")
    assert not out.exists()
