"""Preference readers: our JSONL, TRL standard + conversational, Anthropic HH transcripts; and bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from reward.data import load_preferences
from rlhf.errors import UserError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_ours(tmp_path):
    p = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "id": "a",
                "instruction": "Pick the biggest number.",
                "input": "1, 2, 3",
                "chosen": "3",
                "rejected": "1",
                "annotator": "noisy-0",
            },
        ],
    )
    (row,) = load_preferences(p)
    assert row == {
        "id": "a",
        "instruction": "Pick the biggest number.",
        "input": "1, 2, 3",
        "chosen": "3",
        "rejected": "1",
        "annotator": "noisy-0",
        "format": "ours",
    }


def test_trl_standard_and_conversational(tmp_path):
    p = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
            {
                "prompt": [{"role": "user", "content": "Say hi."}],
                "chosen": [{"role": "assistant", "content": "Hello."}],
                "rejected": [{"role": "assistant", "content": "Go away."}],
            },
            {
                "chosen": [
                    {"role": "user", "content": "Q?"},
                    {"role": "assistant", "content": "A good answer."},
                ],
                "rejected": [
                    {"role": "user", "content": "Q?"},
                    {"role": "assistant", "content": "A bad one."},
                ],
            },
        ],
    )
    rows = load_preferences(p)
    assert [r["format"] for r in rows] == ["trl", "trl-conversational", "trl-conversational"]
    assert rows[0]["instruction"] == "Say hi." and rows[0]["chosen"] == "Hi!"
    assert rows[1]["instruction"] == "Human: Say hi." and rows[1]["chosen"] == "Hello."
    assert rows[2]["instruction"] == "Human: Q?"
    assert (rows[2]["chosen"], rows[2]["rejected"]) == ("A good answer.", "A bad one.")


def test_hh_multi_turn(tmp_path):
    dialogue = "\n\nHuman: How do I bake bread?\n\nAssistant: Flour, water, yeast.\n\nHuman: And salt?"
    rows = [
        {
            "chosen": dialogue + "\n\nAssistant: Yes, a pinch of salt.",
            "rejected": dialogue + "\n\nAssistant: No.",
        },
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: different\n\nAssistant: c"},
    ]
    p = tmp_path / "hh.jsonl.gz"
    p.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    (row,) = load_preferences(p)  # the second row's prompts differ: dropped and counted, not fatal
    assert row["format"] == "hh-rlhf"
    assert (
        row["instruction"]
        == "Human: How do I bake bread?\n\nAssistant: Flour, water, yeast.\n\nHuman: And salt?"
    )
    assert (row["chosen"], row["rejected"]) == ("Yes, a pinch of salt.", "No.")


def test_duplicates_dropped_and_counted(tmp_path, capsys):
    r = {"instruction": "x", "chosen": "a", "rejected": "b"}
    rows = load_preferences(write_jsonl(tmp_path / "d.jsonl", [r, r, {**r, "chosen": "c"}]))
    assert len(rows) == 2
    assert "dropped 1 exact duplicate pairs" in capsys.readouterr().out


def test_real_hh_file(shared_data):
    rows = load_preferences(shared_data / "hh_rlhf" / "harmless_base_test.jsonl.gz", verbose=False)
    # README: 5 pairs do not share the prompt; 4 more end in an empty assistant reply. Both are skipped, counted.
    assert len(rows) == 2312 - 5 - 4
    assert all(r["format"] == "hh-rlhf" and r["chosen"] != r["rejected"] for r in rows)


BAD = {
    "missing_key.jsonl": ('{"instruction": "x", "chosen": "a"}\n', "line 1", "rejected"),
    "empty_chosen.jsonl": (
        '{"instruction": "x", "chosen": "a", "rejected": "b"}\n{"instruction": "x", "chosen": " ", "rejected": "b"}\n',
        "line 2",
        "empty",
    ),
    "identical.jsonl": (
        '{"instruction": "x", "chosen": "same", "rejected": "same"}\n',
        "line 1",
        "identical",
    ),
    "not_string.jsonl": ('{"instruction": "x", "chosen": 3, "rejected": "b"}\n', "line 1", "string"),
    "no_prompt.jsonl": ('{"chosen": "a", "rejected": "b"}\n', "line 1", "no prompt"),
    "malformed.jsonl": (
        '{"instruction": "x", "chosen": "a", "rejected": "b"}\n{"instruction": \n',
        "line 2",
        "malformed",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_pairs(tmp_path, name):
    text, where, what = BAD[name]
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_preferences(p)
    line = e.value.line()
    assert line.startswith(f"error: {p}:{where}") and what in line and "\n" not in line


def test_bad_pairs_non_utf8(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(
        b'{"instruction": "x", "chosen": "a", "rejected": "b"}\n{"instruction": "caf\xe9", "chosen": "a", "rejected": "b"}\n'
    )
    with pytest.raises(UserError, match="line 2.*UTF-8|UTF-8"):
        load_preferences(p)
