"""Data sources (issue 16, point 2): local json/jsonl/csv/tsv/parquet (optionally .gz), saved `datasets` dirs and
dirs of data files give the same rows; hub dataset ids go through `datasets.load_dataset` and fail at once, in
one line, offline; every bad row is named with its source and row."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf.config import build_config
from rlhf.data import load_instructions, read_records
from rlhf.errors import UserError
from rlhf.sources import Source, stage_sources
from sft.config import SFTStageConfig

ROWS = [
    {"instruction": "Say hi", "input": "", "output": "hi"},
    {"instruction": 'Add 1, and "2"', "input": "multi\nline, with comma", "output": "007"},
    {"instruction": "Übersetze: 你好", "input": "", "output": "Hallo 👋"},
]


def plain(rows):
    return [{k: v for k, v in r.items() if k != "_row"} for r in rows]


def write_csv(path: Path, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def write_parquet(path: Path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, object]:
    import datasets

    d = tmp_path_factory.mktemp("sources")
    (d / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS))
    (d / "rows.json").write_text(json.dumps(ROWS))
    write_csv(d / "rows.csv", ROWS)
    write_csv(d / "rows.tsv", ROWS, delimiter="\t")
    (d / "rows.csv.gz").write_bytes(gzip.compress((d / "rows.csv").read_bytes()))
    write_parquet(d / "rows.parquet", ROWS)
    datasets.Dataset.from_list(ROWS).save_to_disk(str(d / "saved"))
    held_out = [{"instruction": "held out", "input": "", "output": "x"}]
    datasets.DatasetDict(
        train=datasets.Dataset.from_list(ROWS), test=datasets.Dataset.from_list(held_out)
    ).save_to_disk(str(d / "saved_dict"))
    (d / "repo" / "data").mkdir(parents=True)  # a hub dataset repo as `hf download` leaves it
    write_parquet(d / "repo" / "data" / "train-00000-of-00001.parquet", ROWS)
    write_parquet(d / "repo" / "data" / "test-00000-of-00001.parquet", held_out)
    return {
        **{name: d / name for name in ("rows.jsonl", "rows.json", "rows.csv", "rows.tsv", "rows.csv.gz")},
        **{name: d / name for name in ("rows.parquet", "saved", "saved_dict")},
        "repo (load_dataset)": Source(str(d / "repo")),
        "jsonl as a Source": Source(str(d / "rows.jsonl")),
    }


@pytest.mark.parametrize(
    "name",
    [
        "rows.jsonl",
        "rows.json",
        "rows.csv",
        "rows.tsv",
        "rows.csv.gz",
        "rows.parquet",
        "saved",
        "saved_dict",
        "repo (load_dataset)",
        "jsonl as a Source",
    ],
)
def test_every_source_gives_the_same_rows(sources, name):
    rows = read_records(sources[name])
    assert plain(rows) == ROWS  # csv cells stay strings: "007" is not 7
    assert all(r["_row"] for r in rows)
    assert load_instructions(sources[name]) == ROWS


def test_rows_are_named_by_line_or_row(sources):
    # the csv row with a quoted newline starts on line 3; the one after it on line 5
    assert [r["_row"] for r in read_records(sources["rows.csv"])] == ["line 2", "line 3", "line 5"]
    assert [r["_row"] for r in read_records(sources["rows.parquet"])] == ["row 1", "row 2", "row 3"]


def test_splits_of_a_dataset_dict_and_of_a_data_files_dir(sources):
    d = sources["saved_dict"]
    assert plain(read_records(Source(str(d), split="test"))) == [
        {"instruction": "held out", "input": "", "output": "x"}
    ]
    assert plain(read_records(d, split="test")) == plain(read_records(Source(str(d), split="test")))
    repo = sources["repo (load_dataset)"].name
    assert plain(read_records(Source(repo, split="test")))[0]["instruction"] == "held out"
    with pytest.raises(UserError, match="dataset dict has no 'validation' split"):
        read_records(Source(str(d), split="validation"))
    with pytest.raises(UserError, match="a single file has no split 'test'"):
        read_records(Source(str(sources["rows.csv"]), split="test"))


def test_stage_sources_follow_trls_keys(sources):
    d = str(sources["saved_dict"])
    cfg = build_config(SFTStageConfig, {"dataset_name": d, "dataset_test_split": "test"})
    train, held_out = stage_sources(cfg, "data_path", "eval_data_path")
    assert (train, held_out) == (Source(d, None, "train"), Source(d, None, "test"))
    assert plain(load_instructions(held_out))[0]["instruction"] == "held out"
    cfg = build_config(SFTStageConfig, {"data_path": d, "eval_data_path": str(sources["rows.csv"])})
    assert stage_sources(cfg, "data_path", "eval_data_path")[1] == Source(str(sources["rows.csv"]))
    cfg = build_config(SFTStageConfig, {"data_path": d})
    assert stage_sources(cfg, "data_path", "eval_data_path")[1] is None  # eval_fraction is split off
    cfg = build_config(SFTStageConfig, {"data_path": d, "eval_data_path": d, "dataset_test_split": "test"})
    with pytest.raises(UserError, match="set eval_data_path or dataset_test_split, not both"):
        stage_sources(cfg, "data_path", "eval_data_path")
    with pytest.raises(UserError) as e:
        stage_sources(build_config(SFTStageConfig, {}), "data_path", "eval_data_path")
    assert e.value.line().startswith(
        "error: command line:key 'data_path': data_path (or TRL's dataset_name) is"
    )


@pytest.mark.parametrize(
    "text,where,what",
    [
        ("instruction,output\nhi,there\nbye\n", "line 3", "1 cells; expected 2, one per header column"),
        ("instruction,output\nhi,there,extra\n", "line 2", "3 cells; expected 2"),
        ("instruction,instruction\na,b\n", "line 1", "header names column 'instruction' twice"),
        ("instruction,\na,b\n", "line 1", "header has an empty column name"),
        ('instruction,output\n"a"b,c\n', "line 2", "malformed CSV"),
        ("instruction,output\n", None, "no rows; expected a header line"),
        ("output\nhi\n", "line 2", "key 'instruction': missing; expected a string"),
        ("instruction,output\n\nhi,\n\n ,x\n", "line 5", "key 'instruction': empty string"),
    ],
)
def test_bad_csv_rows_are_named(tmp_path, text, where, what):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_instructions(path)
    line = e.value.line()
    assert line.startswith(f"error: {path}:{where}: " if where else f"error: {path}: "), line
    assert what in line and "\n" not in line


def test_csv_bytes_that_are_not_utf8_are_named_by_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("instruction,output\nok,fine\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(UserError, match=r":line 3: not valid UTF-8"):
        read_records(path)
    path.write_bytes(
        b"\xef\xbb\xbfinstruction,output\nhi,there\n"
    )  # Excel's byte order mark is not a column name
    assert plain(read_records(path)) == [{"instruction": "hi", "output": "there"}]


def test_bad_parquet_files_and_rows_are_named(tmp_path):
    good = write_parquet(tmp_path / "good.parquet", ROWS)
    for name, data in [("cut.parquet", good.read_bytes()[:-20]), ("text.parquet", b"instruction,output\n")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as e:
            read_records(tmp_path / name)
        assert e.value.line().startswith(f"error: {tmp_path / name}: not a readable Parquet file")
    write_parquet(
        tmp_path / "nan.parquet",
        [{"instruction": "a", "score": 1.0}, {"instruction": "b", "score": float("nan")}],
    )
    with pytest.raises(UserError, match=r"nan.parquet:row 2: key 'score': nan is not a finite number"):
        read_records(tmp_path / "nan.parquet")
    write_parquet(
        tmp_path / "typed.parquet", [{"instruction": "a", "output": 1}, {"instruction": "b", "output": 2}]
    )
    with pytest.raises(UserError, match=r"typed.parquet:row 1: key 'output': expected a string, got int"):
        load_instructions(tmp_path / "typed.parquet")


def test_a_bad_row_of_a_data_files_dir_names_the_dir_and_row(tmp_path):
    (tmp_path / "repo").mkdir()
    write_parquet(
        tmp_path / "repo" / "train.parquet",
        [{"instruction": "a", "output": "b"}, {"instruction": "", "output": "c"}],
    )
    with pytest.raises(UserError) as e:
        load_instructions(Source(str(tmp_path / "repo")))
    assert (
        e.value.line() == f"error: {tmp_path / 'repo'}:row 2: key 'instruction': empty string; expected text"
    )


def test_local_looking_names_are_paths_and_the_rest_hub_ids(tmp_path):
    from rlhf.sources import is_local

    for name in ("data/train.jsonl", "./x", "/abs", "~/x", "a/b/c", "prefs.csv", str(tmp_path)):
        assert is_local(name), name
    for name in ("trl-lib/ultrafeedback_binarized", "imdb", "Anthropic/hh-rlhf"):
        assert not is_local(name), name
    with pytest.raises(UserError, match="data/train.jsonl: no such file or directory"):
        read_records(Source("data/train.jsonl"))


def test_offline_hub_id_fails_fast_in_one_line():
    # conftest sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE; nothing here may wait on the network
    start = time.monotonic()
    with pytest.raises(UserError) as e:
        read_records(Source("some-org/not-cached-here", "default", "train"))
    assert time.monotonic() - start < 5
    line = e.value.line()
    assert line.startswith(
        "error: some-org/not-cached-here[default:train]: not a local file or dir, and a hub"
    )
    assert "offline" in line and "\n" not in line


def test_offline_hub_id_in_reward_and_ppo_names_the_id():
    from ppo.config import PPOStageConfig
    from reward.data import load_preferences
    from rlhf.rollout_prompts import load_prompts

    with pytest.raises(UserError, match=r"^error: org/prefs: not a local file or dir, and a hub dataset id"):
        load_preferences(Source("org/prefs"))
    cfg = build_config(PPOStageConfig, {"dataset_name": "org/prompts", "dataset_train_split": "prompts"})
    with pytest.raises(UserError, match=r"^error: org/prompts\[prompts\]: not a local file or dir"):
        load_prompts(cfg)


def test_offline_hub_id_through_the_cli_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # HF_DATASETS_OFFLINE alone suffices
    env["HF_DATASETS_OFFLINE"] = "1"
    args = ["sft", "--dataset_name", "some-org/not-cached-here", "--output_dir", str(tmp_path / "out")]
    res = subprocess.run(
        [sys.executable, "-m", "rlhf.cli", *args],
        capture_output=True, text=True, timeout=180, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: some-org/not-cached-here: not a local file or dir, and a hub dataset id needs the network: offline "
        "(HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) and not in the local datasets cache; download it or give a local path"
    ]
    assert not (tmp_path / "out").exists()


def test_sft_trains_on_a_dataset_dir_by_trls_keys_and_reports_to_a_tracker_list(
    tmp_path, demo_base, monkeypatch
):
    """`dataset_name` + `dataset_test_split` on a downloaded-hub-repo dir, `report_to: [tensorboard]`: the stage
    trains on the train split, evaluates on the test split, and records the source under both names."""
    import sft
    from rlhf import checkpoint
    from rlhf.tasks.demo import make_sft_rows

    rows = make_sft_rows(40, seed=0, kinds=("largest",))
    (tmp_path / "repo" / "data").mkdir(parents=True)
    write_parquet(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet", rows[:32])
    write_parquet(tmp_path / "repo" / "data" / "test-00000-of-00001.parquet", rows[32:])
    out = tmp_path / "sft"
    monkeypatch.chdir(tmp_path)  # tensorboard's fallback is ./runs: it must not be used
    cfg = build_config(SFTStageConfig, {
        "config": REPO / "configs/demo/sft.yaml", "model_name_or_path": str(demo_base),
        "dataset_name": str(tmp_path / "repo"), "dataset_test_split": "test", "output_dir": str(out),
        "max_steps": 2, "per_device_train_batch_size": 8, "quiet": True, "save_strategy": "no",
        "report_to": ["tensorboard"], "use_peft": True, "lora_target_modules": "q_proj,v_proj",
    })  # fmt: skip
    sft.run(cfg)
    manifest = checkpoint.read_manifest(out)
    config = manifest["config"]
    assert config["data_path"] == config["dataset_name"] == str(tmp_path / "repo")
    assert (config["dataset_train_split"], config["dataset_test_split"]) == ("train", "test")
    assert config["report_to"] == ["tensorboard"] and config["use_lora"] is True
    metrics = manifest["metrics"]
    assert (metrics["train_rows"], metrics["eval_rows"]) == (
        32,
        8,
    )  # the train split; the test split held out
    assert metrics["eval_loss"] > 0
    assert list((out / "runs").glob("events.out.tfevents.*")), (
        "tensorboard wrote no event file in the stage dir"
    )
    assert not (tmp_path / "runs").exists()


def test_model_card_lists_a_hub_dataset_never_a_local_path(tmp_path):
    from rlhf.config import config_to_dict
    from rlhf.model_card import model_card

    out = tmp_path / "sft"
    out.mkdir()
    for data_path, expected in [
        ("trl-lib/Capybara", ["trl-lib/Capybara"]),
        (str(tmp_path / "d.jsonl"), None),
    ]:
        cfg = build_config(SFTStageConfig, {"data_path": data_path, "output_dir": str(out)})
        card = model_card(out, "sft", parents=[], metrics={}, base_model=None, config=config_to_dict(cfg),
                          template="alpaca")  # fmt: skip
        assert card.data.datasets == expected


# --- the new readers are total: any bytes give rows or one UserError (as tests/test_fuzz.py checks the others) ---
FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def rows_or_user_error(read, source):
    try:
        return read(source)
    except UserError as e:
        assert "\n" not in e.line()
        return None


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".csv.gz", ".parquet"]))
def test_csv_and_parquet_readers_on_random_bytes(tmp_path_factory, raw, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"random{suffix}"
    path.write_bytes(raw)
    rows_or_user_error(read_records, path)
    rows_or_user_error(load_instructions, path)


@FUZZ
@given(data=st.data())
def test_damaged_parquet_bytes_never_crash(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("fuzz")
    raw = bytearray(write_parquet(d / "good.parquet", ROWS).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    (d / "bad.parquet").write_bytes(bytes(raw))
    rows_or_user_error(load_instructions, d / "bad.parquet")


cell = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@FUZZ
@given(
    header=st.lists(
        cell.filter(lambda c: c.strip() and not c.startswith("\ufeff")), min_size=1, max_size=4, unique=True
    ),
    data=st.data(),
)
def test_csv_written_by_the_csv_module_reads_back_as_the_same_strings(tmp_path_factory, header, data):
    body = data.draw(
        st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), min_size=1, max_size=4)
    )
    path = tmp_path_factory.mktemp("fuzz") / "rows.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *body])
    assert [[r[h] for h in header] for r in read_records(path)] == body


def test_ppo_prompts_and_reward_pairs_from_the_new_sources(sources, tmp_path):
    import datasets

    from ppo.config import PPOStageConfig
    from reward.data import load_preferences
    from rlhf.rollout_prompts import load_prompts

    cfg = build_config(PPOStageConfig, {"prompts_path": str(sources["rows.csv"]), "num_eval_prompts": 0})
    train, held_out = load_prompts(cfg)
    assert [r["instruction"] for r in train] == [r["instruction"] for r in ROWS] and held_out == []
    cfg = build_config(
        PPOStageConfig, {"dataset_name": str(sources["saved_dict"]), "dataset_test_split": "test"}
    )
    train, held_out = load_prompts(cfg)
    assert len(train) == len(ROWS) and [r["instruction"] for r in held_out] == ["held out"]

    pairs = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(3)]
    write_parquet(tmp_path / "pairs.parquet", pairs)
    write_csv(tmp_path / "pairs.csv", pairs)
    datasets.DatasetDict(train=datasets.Dataset.from_list(pairs)).save_to_disk(str(tmp_path / "pairs_dir"))
    got = [load_preferences(tmp_path / p, verbose=False) for p in ("pairs.parquet", "pairs.csv", "pairs_dir")]
    without_id = [[{k: v for k, v in pair.items() if k != "id"} for pair in pairs] for pairs in got]
    assert without_id[0] == without_id[1] == without_id[2] and len(got[0]) == 3  # `id` is the row's name
    (tmp_path / "bad_pairs.csv").write_text("prompt,chosen,rejected\nq,good,bad\nq2,same,same\n")
    with pytest.raises(UserError, match=r"bad_pairs.csv:line 3: chosen is identical to rejected"):
        load_preferences(tmp_path / "bad_pairs.csv", verbose=False)
