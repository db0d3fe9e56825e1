"""Fuzzing every reader of user files: random bytes, random JSON and near-miss rows (the right keys with values of
any type) must either read or raise UserError, the one-line refusal. Any other exception is a crash to fix.

Hypothesis draws the inputs (no example database is written); each reader gets 100 cases by default, in about 20 s
for the whole file. RLHF_FUZZ_EXAMPLES=2000 hunts longer. A failure prints the smallest input that crashes.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf.errors import UserError

EXAMPLES = int(os.environ.get("RLHF_FUZZ_EXAMPLES", "100"))  # more for a longer hunt
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
# Text that looks like HH-RLHF transcripts, so the transcript splitting is reached.
transcripts = st.lists(
    st.sampled_from(["\n\nHuman:", "\n\nAssistant:", " 7", " five", "", " "]), max_size=6
).map("".join)
messages = st.lists(
    st.dictionaries(
        st.sampled_from(["role", "content"]),
        st.sampled_from(["user", "assistant", "system", ""]) | st.text(max_size=4) | st.integers(),
        max_size=2,
    ),
    max_size=3,
)
KEYS = ["instruction", "input", "output", "chosen", "rejected", "prompt", "responses", "sources", "id", "margin",
        "annotator", "policy", "sampling", "kind", "finished"]  # fmt: skip
rows = st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=4),
    values | transcripts | messages | st.lists(st.text(max_size=5), max_size=3),
    max_size=6,
)
documents = st.lists(rows | values, max_size=5)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def encodings(draw_rows: list, style: str) -> bytes:
    if style == "json":
        return json.dumps(draw_rows).encode()
    text = "".join(json.dumps(r) + "\n" for r in draw_rows)
    return gzip.compress(text.encode()) if style == "jsonl.gz" else text.encode()


def only_user_errors(read, path: Path) -> None:
    try:
        read(path)
    except UserError as e:
        assert "\n" not in e.line().strip() or "Traceback" not in e.line()


# (name, reader): each takes a path.
def _instructions(p):
    from rlhf.data import load_instructions

    load_instructions(p)


def _prompts(p):
    from rlhf.data import load_instructions

    load_instructions(p, require_output=False)


def _preferences(p):
    from reward.data import load_preferences

    load_preferences(p, verbose=False)


def _label_pairs(p):
    from rlhf.label.pairs import load_pairs

    load_pairs(p)


def _annotate_pairs(p):
    from rlhf.annotators import _validate_pairs
    from rlhf.data import read_records

    _validate_pairs(read_records(p), p)


ROW_READERS = {
    "instructions": _instructions,
    "prompts": _prompts,
    "preferences": _preferences,
    "label pairs": _label_pairs,
    "annotate pairs": _annotate_pairs,
}


@pytest.mark.parametrize("reader", sorted(ROW_READERS))
@FUZZ
@given(data=documents, style=st.sampled_from(["json", "jsonl", "jsonl.gz"]))
def test_row_readers_on_random_json(reader, data, style, scratch):
    path = scratch / f"{reader.replace(' ', '_')}.{style}"
    path.write_bytes(encodings(data, style))
    only_user_errors(ROW_READERS[reader], path)


@pytest.mark.parametrize("reader", sorted(ROW_READERS))
@FUZZ
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".json", ".jsonl", ".jsonl.gz", ".txt"]))
def test_row_readers_on_random_bytes(reader, raw, suffix, scratch):
    path = scratch / f"{reader.replace(' ', '_')}_bytes{suffix}"
    path.write_bytes(raw)
    only_user_errors(ROW_READERS[reader], path)


yaml_docs = st.dictionaries(st.text(max_size=8), values, max_size=4).map(json.dumps) | st.text(max_size=60)


@FUZZ
@given(doc=yaml_docs | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
def test_yaml_and_pipeline_config_readers(doc, scratch):
    from rlhf.config import load_yaml_mapping
    from rlhf.pipeline import load_pipeline_config

    path = scratch / "config.yaml"
    path.write_bytes(doc.encode("utf-8", "surrogatepass") if isinstance(doc, str) else doc)
    only_user_errors(load_yaml_mapping, path)
    only_user_errors(load_pipeline_config, path)


def _stage_fields(config_cls) -> list[str]:
    from rlhf.config import _Parser

    return sorted(a.dest for a in _Parser([config_cls], "fuzz")._actions if a.dest not in ("help", "env"))


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo"])
@settings(max_examples=max(EXAMPLES * 2 // 3, 1), deadline=None, database=None)
@given(data=st.data())
def test_stage_config_files_with_real_keys_and_random_values(stage, data, scratch):
    """A YAML of the stage's own keys with values of any type: read, or one UserError naming the key."""
    from ppo.config import PPOStageConfig
    from reward.config import RewardStageConfig
    from rlhf.config import parse_config
    from sft.config import SFTStageConfig

    cls = {"sft": SFTStageConfig, "reward": RewardStageConfig, "ppo": PPOStageConfig}[stage]
    keys = data.draw(st.lists(st.sampled_from(_stage_fields(cls)), max_size=4, unique=True))
    doc = {k: data.draw(scalars | st.lists(scalars, max_size=2), label=k) for k in keys}
    path = scratch / f"{stage}.yaml"
    path.write_text(json.dumps(doc))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(scratch)  # a value naming a relative dir stays inside the scratch dir
        for var in list(os.environ):  # parse_config may set launcher variables: undone after each case
            mp.setenv(var, os.environ[var])
        only_user_errors(lambda p: parse_config([cls], ["--config", str(p)]), path)


@FUZZ
@given(
    argv=st.lists(
        st.sampled_from(
            [
                "--learning_rate",
                "--seed",
                "--output_dir",
                "--bogus",
                "--config",
                "-x",
                "1",
                "abc",
                "",
                "--num_train_epochs",
                "=",
                "--quiet",
                "true",
            ]
        ),
        max_size=5,
    )
)
def test_stage_command_lines(argv, scratch):  # fmt: skip
    from rlhf.config import parse_config
    from sft.config import SFTStageConfig

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(scratch)
        only_user_errors(lambda _: parse_config([SFTStageConfig], argv), scratch)


@FUZZ
@given(raw=st.binary(max_size=200) | documents.map(lambda d: json.dumps(d[0] if d else {}).encode()))
def test_manifest_reader(raw, scratch):
    from rlhf import checkpoint

    stage = scratch / "stage"
    stage.mkdir(exist_ok=True)
    (stage / "model.safetensors").write_bytes(b"")
    (stage / checkpoint.MANIFEST).write_bytes(raw)
    only_user_errors(lambda p: checkpoint.require(p, kind="sft"), stage)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_label_database_reader_on_random_bytes(raw, scratch):
    from rlhf.label.export import preference_rows

    db = scratch / "labels.sqlite"
    db.write_bytes(raw)
    only_user_errors(preference_rows, db)


@FUZZ
@given(tables=st.lists(st.sampled_from(["meta", "items", "labels", "assignments", "other"]), max_size=5, unique=True),
       version=st.sampled_from(["1", "2", "", "x"]))  # fmt: skip
def test_label_database_reader_on_partial_schemas(tables, version, scratch):
    """SQLite files with some of our tables (empty, or a meta table with any version): refused, not crashed."""
    from rlhf.label.export import preference_rows

    db = scratch / "partial.sqlite"
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    for t in tables:
        conn.execute(f"CREATE TABLE {t} (key TEXT, value TEXT, id TEXT)")
        conn.execute(f"INSERT INTO {t} VALUES ('k', 'v', 'i')")
    if "meta" in tables:
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?, NULL)", (version,))
    conn.commit()
    conn.close()
    only_user_errors(preference_rows, db)
