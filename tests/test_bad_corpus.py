"""The bad-input corpus: every file under tests/data/bad/ (and a set of bad command lines), each fed to the command
that reads it. Each must exit 2 with exactly one stderr line `error: <file>:<row or key>: <what>` (just the file
when the whole file is wrong), and leave no output behind.

The commands run through `rlhf.cli.main`, the entry point the `rlhf` script calls, in this process: a subprocess
per case would cost an interpreter start each (test_bad_input.py keeps a few as real subprocesses). Each bad file
is copied to a temp dir first, so a reader that wrote to its input could not damage the corpus.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _faults import write_prefs
from conftest import REPO

BAD = Path(__file__).parent / "data" / "bad"
CONFIGS = REPO / "configs" / "demo"

# How each reader is reached: the command line with FILE (the bad file) and OUT (an output path) in it.
READERS = {
    "sft data": ["sft", "--config", CONFIGS / "sft.yaml", "--model_name_or_path", "{base}", "--data_path", "FILE",
                 "--output_dir", "OUT"],
    "ppo prompts": ["ppo", "--config", CONFIGS / "ppo.yaml", "--sft_path", "{sft}", "--reward_path", "{reward}",
                    "--prompts_path", "FILE", "--output_dir", "OUT"],
    "compare prompts": ["compare", "{sft}", "--prompts", "FILE", "--out", "OUT"],
    "reward pairs": ["reward", "--config", CONFIGS / "reward.yaml", "--sft_path", "{sft}", "--pairs_path", "FILE",
                     "--output_dir", "OUT"],
    "score pairs": ["score", "{reward}", "--pairs", "FILE"],
    "annotate pairs": ["annotate", "FILE", "--annotator", "gold", "--out", "OUT"],
    "label pairs": ["label", "serve", "FILE", "--db", "OUT", "--no-serve", "--quiet"],
    "label export": ["label", "export", "--db", "FILE", "--out", "OUT"],
    "sft config": ["sft", "--config", "FILE", "--model_name_or_path", "{base}", "--data_path", "{sft_data}",
                   "--output_dir", "OUT"],
    "reward config": ["reward", "--config", "FILE", "--sft_path", "{sft}", "--pairs_path", "{prefs}",
                      "--output_dir", "OUT"],
    "ppo config": ["ppo", "--config", "FILE", "--sft_path", "{sft}", "--reward_path", "{reward}", "--output_dir",
                   "OUT"],
    "pipeline config": ["pipeline", "--config", "FILE", "--out", "OUT"],
}  # fmt: skip

# file under tests/data/bad -> (reader, what the error line says right after the file name)
FILES = {
    # instruction data (rlhf/data.py): SFT data, PPO / compare prompts
    "sft_empty.json": ("sft data", ": file is empty"),
    "sft_malformed.json": ("sft data", ":line 3: malformed JSON"),
    "sft_malformed.jsonl": ("sft data", ":line 2: malformed JSON"),
    "sft_missing_instruction.json": ("sft data", ":row 3: key 'instruction': missing"),
    "sft_missing_output.jsonl": ("sft data", ":line 2: key 'output': missing"),
    "sft_non_string_input.jsonl": ("sft data", ":line 3: key 'input': expected a string, got list"),
    "sft_non_string_output.json": ("sft data", ":row 2: key 'output': expected a string, got int"),
    "sft_non_utf8.jsonl": ("sft data", ":line 2: not valid UTF-8"),
    "sft_not_a_list.json": ("sft data", ": expected a JSON list of objects, got dict"),
    "sft_empty_instruction.jsonl": ("sft data", ":line 2: key 'instruction': empty string"),
    "sft_row_not_object.json": ("sft data", ":row 2: expected a JSON object, got str"),
    "sft_row_not_object.jsonl": ("sft data", ":line 2: expected a JSON object, got list"),
    "sft_empty_list.json": ("sft data", ": the list is empty"),
    "sft_not_gzip.jsonl.gz": ("sft data", ": cannot read (Not a gzipped file"),
    "sft_not_a_dataset_dir": ("sft data", ": not a saved `datasets` dir"),
    "prompts_missing_instruction.jsonl": ("ppo prompts", ":line 2: key 'instruction': missing"),
    "prompts_non_string_input.json": ("compare prompts", ":row 1: key 'input': expected a string, got list"),
    # preference pairs (reward/data.py): ours, TRL standard and conversational, HH-RLHF transcripts
    "prefs_missing_rejected.jsonl": ("reward pairs", ":line 2: missing key 'rejected'"),
    "prefs_identical.jsonl": ("reward pairs", ":line 1: chosen is identical to rejected"),
    "prefs_chosen_not_string.jsonl": (
        "score pairs",
        ":line 1: key 'chosen': expected a string or a message list",
    ),
    "prefs_margin_not_number.jsonl": ("reward pairs", ":line 2: key 'margin': expected a number, got str"),
    "prefs_instruction_not_string.json": (
        "reward pairs",
        ":row 1: keys 'instruction'/'input' must be strings",
    ),
    "prefs_empty_response.jsonl": ("reward pairs", ":line 1: key 'rejected': empty response"),
    "prefs_no_prompt.jsonl": ("reward pairs", ":line 1: no prompt"),
    "prefs_malformed.jsonl": ("reward pairs", ":line 2: malformed JSON"),
    "prefs_not_a_list.json": ("reward pairs", ": expected a JSON list of objects, got dict"),
    "trl_prompt_not_string.jsonl": (
        "reward pairs",
        ":line 1: key 'prompt': expected a string or a message list",
    ),
    "trl_conversational_mixed.jsonl": (
        "reward pairs",
        ":line 1: conversational 'chosen' and 'rejected' must",
    ),
    "trl_conversational_bad_message.jsonl": (
        "reward pairs",
        ":line 2: key 'chosen' message 1: expected {'role': str, 'content': str}",
    ),
    "trl_conversational_prompt_not_list.jsonl": (
        "reward pairs",
        ":line 1: conversational 'prompt' must be a",
    ),
    "hh_no_final_assistant.jsonl": ("reward pairs", ":line 1: HH transcript without a final"),
    "hh_no_usable_pair.jsonl": ("reward pairs", ": no usable preference pairs"),
    # pairs files (`rlhf pairs` output) as annotate and the labeling app read them
    "pairs_one_response.jsonl": ("annotate pairs", ":line 2: key 'responses': expected a list of at least 2"),
    "label_pairs_duplicate_id.jsonl": (
        "label pairs",
        ":line 2: key 'id': duplicate id 'p0' (first at line 1)",
    ),
    "label_pairs_response_not_string.jsonl": ("label pairs", ":line 1: key 'responses': element 1 is int"),
    "label_pairs_sources_mismatch.jsonl": (
        "label pairs",
        ":line 1: key 'sources': has 3 names for 2 responses",
    ),
    "label_pairs_no_prompt.jsonl": ("label pairs", ":line 1: needs 'instruction' or 'prompt'"),
    # the labeling app's database, as `rlhf label export` reads it
    "label_db_not_sqlite.sqlite": ("label export", ": cannot open as an SQLite database"),
    "label_db_foreign.sqlite": ("label export", ": not a labels database (no 'meta' table)"),
    # a table name with a flipped byte: SQLite's error message quotes it, and it is not UTF-8
    "label_db_corrupt_schema.sqlite": (
        "label export",
        ": cannot open as an SQLite database (malformed database schema",
    ),
    "label_db_future_schema.sqlite": ("label export", ": labels database schema version '99'"),
    # YAML configs: stage configs (rlhf/config.py) and the pipeline's
    "config_unknown_key.yaml": ("sft config", ":key 'learnig_rate': unknown config key"),
    "config_wrong_type.yaml": ("sft config", ":key 'num_train_epochs': expected float, got 'three'"),
    "config_malformed.yaml": ("sft config", ":line 4: malformed YAML"),
    "config_not_a_mapping.yaml": ("sft config", ": expected a YAML mapping of config keys, got list"),
    "config_non_utf8.yaml": ("sft config", ": config is not valid UTF-8"),
    "config_bad_choice.yaml": (
        "sft config",
        ":key 'lr_scheduler_type': invalid value: cosine_with_surprise is not",
    ),
    "config_bool_for_number.yaml": ("sft config", ":key 'learning_rate': expected a number, got True"),
    "config_env_not_mapping.yaml": ("sft config", ":key 'env': expected a mapping of environment variables"),
    "reward_config_unknown_key.yaml": ("reward config", ":key 'pair_path': unknown config key"),
    "ppo_config_wrong_type.yaml": ("ppo config", ":key 'kl_coef': expected float, got 'small'"),
    "pipeline_unknown_key.yaml": ("pipeline config", ":key 'surprise': unknown pipeline key"),
    "pipeline_unknown_subkey.yaml": ("pipeline config", ":key 'sft.lr': unknown key"),
    "pipeline_missing_stage_config.yaml": ("pipeline config", ":key 'ppo.config': missing stage config path"),
    "pipeline_section_not_mapping.yaml": ("pipeline config", ":key 'data': expected a mapping"),
}

# bad command lines -> what follows `error: command line`
ARGS = {
    "unknown_flag": (["sft", "--learnig_rate", "1e-4"], ":--learnig_rate: unknown option"),
    "flag_not_a_number": (["sft", "--learning_rate", "fast"], ":--learning_rate: invalid float value: 'fast'"),
    "flag_without_value": (["ppo", "--kl_coef"], ":--kl_coef: expected one argument"),
    "stray_argument": (["reward", "prefs.jsonl"], ":prefs.jsonl: unexpected argument"),
    "config_without_path": (["sft", "--config"], ": --config needs a YAML file path"),
    "unknown_command": (["trian"], ": unknown command 'trian'"),
    "probability_out_of_range": (["annotate", "x.jsonl", "--flip-rate", "2", "--out", "y"], ":--flip-rate:"),
    "unknown_task_kind": (["tasks", "--kinds", "largest,biggest", "--out", "x.json"], ":--kinds: unknown task"),
    "too_few_responses": (["pairs", "--policy", "p", "--prompts", "q", "--out", "r", "--n", "1"], ":--n:"),
    "port_out_of_range": (["label", "serve", "--db", "x.sqlite", "--port", "70000"], ":--port: port 70000"),
    "unknown_pipeline_step": (["pipeline", "--config", REPO / "tests/data/pipeline_tiny.yaml", "--force", "rm"],
                              ":--force: unknown step 'rm'"),
    "missing_required": (["score"], ": the following arguments are required: checkpoint"),
}  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tiny_chain, demo_base, tmp_path_factory) -> dict[str, str]:
    good = tmp_path_factory.mktemp("good")
    return {
        "{base}": str(demo_base),
        "{sft}": str(tiny_chain["sft"]),
        "{reward}": str(tiny_chain["reward"]),
        "{sft_data}": str(tiny_chain["root"] / "sft.json"),
        "{prefs}": str(write_prefs(good / "prefs.jsonl", n=20)),
    }


def run_rlhf(argv: list, capsys) -> tuple[int, list[str]]:
    from rlhf.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.splitlines()


def assert_one_error_line(rc: int, lines: list[str], expected_start: str) -> None:
    assert rc == 2, lines
    assert len(lines) == 1, "expected exactly one stderr line, got:\n" + "\n".join(lines)
    assert lines[0].startswith(expected_start), lines[0]


@pytest.mark.parametrize("name", sorted(FILES))
def test_bad_file_is_refused_with_one_line_naming_file_and_row_or_key(name, inputs, tmp_path, capsys):
    reader, where = FILES[name]
    src = BAD / name
    path = tmp_path / name
    shutil.copytree(src, path) if src.is_dir() else shutil.copy2(src, path)
    out = tmp_path / "out"
    argv = [path if a == "FILE" else out if a == "OUT" else inputs.get(a, a) for a in READERS[reader]]
    rc, lines = run_rlhf(argv, capsys)
    assert_one_error_line(rc, lines, f"error: {path}{where}")
    assert not out.exists(), "a refused input left output behind"
    if src.is_file():
        assert path.read_bytes() == src.read_bytes(), "the reader changed its input file"


@pytest.mark.parametrize("name", sorted(ARGS))
def test_bad_command_line_is_refused_with_one_line_naming_the_flag(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative outputs, if any were written, land here
    argv, where = ARGS[name]
    rc, lines = run_rlhf(argv, capsys)
    assert_one_error_line(rc, lines, f"error: command line{where}")
    assert not any(tmp_path.iterdir()), "a refused command line left output behind"


def test_every_file_in_the_corpus_has_a_case():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(FILES)
