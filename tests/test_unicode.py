"""Non-Latin text end to end: Korean (plus Japanese, Arabic, emoji with a skin-tone modifier and a variation
selector) through the demo tokenizer's training, preprocessing, a short SFT that memorises the rows, and
`rlhf generate`, which must print the trained answers byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from rlhf.data import load_instructions
from rlhf.io import atomic_write_json
from rlhf.models import load_tokenizer
from sft.data import preprocess, sources_and_targets

DATA = Path(__file__).parent / "data" / "sft_unicode.json"
DEMO_CONFIG = REPO / "configs" / "demo" / "sft.yaml"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_instructions(DATA)


@pytest.fixture(scope="module")
def unicode_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unicode") / "base"
    run_cli("demo-model", "--out", out, "--extra-text", DATA)
    return out


@pytest.fixture(scope="module")
def unicode_sft(tmp_path_factory, unicode_base, rows) -> Path:
    root = tmp_path_factory.mktemp("unicode_sft")
    atomic_write_json(root / "train.json", rows * 30)  # 180 rows: memorise six answers
    out = root / "sft"
    run_cli("sft", "--config", DEMO_CONFIG, "--model_name_or_path", unicode_base, "--data_path",
            root / "train.json", "--output_dir", out, "--eval_fraction", "0", "--num_train_epochs", "10",
            "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--quiet", "true",
            "--save_strategy", "no")  # fmt: skip
    return out


def test_fixture_is_really_non_latin(rows):
    text = "".join(r["instruction"] + r["input"] + r["output"] for r in rows)
    assert any("\uac00" <= c <= "\ud7a3" for c in text)  # Hangul syllables
    assert any("\u3040" <= c <= "\u30ff" for c in text)  # kana
    assert any("\u0600" <= c <= "\u06ff" for c in text)  # Arabic
    assert any(ord(c) > 0xFFFF for c in text)  # astral-plane emoji (4 UTF-8 bytes)


def test_demo_tokenizer_learns_the_extra_text_and_round_trips(unicode_base, demo_base, rows):
    tok = load_tokenizer(unicode_base)
    plain = load_tokenizer(demo_base)
    korean = "대한민국의 수도는 서울입니다."
    # the extra text joined the tokenizer corpus: Korean needs fewer tokens than with the task-only tokenizer
    assert len(tok(korean)["input_ids"]) < len(plain(korean)["input_ids"])

    sources, targets = sources_and_targets(rows, tok.eos_token)
    out = preprocess(sources, targets, tok, max_length=512)
    assert out["kept"] == list(range(len(rows)))
    for ids, labels, src, tgt in zip(out["input_ids"], out["labels"], sources, targets):
        assert tok.unk_token_id not in ids  # byte-level: nothing is unknown
        assert tok.decode(ids) == src + tgt  # exact round trip, every byte
        n_src = sum(1 for t in labels if t == -100)
        assert tok.decode(ids[n_src:]) == tgt  # the learned part is exactly the response + EOS
    # and the task-only tokenizer round-trips it too (as bytes), it just needs more tokens
    for src, tgt in zip(sources, targets):
        assert plain.decode(plain(src + tgt)["input_ids"]) == src + tgt


def test_generate_prints_the_trained_answers_intact(unicode_sft, rows, capsys):
    # Through a real stdout pipe: Korean, and an emoji row with a skin-tone modifier and a variation selector.
    for row in (rows[0], rows[5]):
        args = ["--instruction", row["instruction"]] + (["--input", row["input"]] if row["input"] else [])
        res = run_cli("generate", unicode_sft, *args, "--max-new-tokens", "48")
        assert res.stdout == row["output"] + "\n", (res.stdout, row["output"])
        assert "\ufffd" not in res.stdout  # no replacement characters from split bytes

    from rlhf.generate_cli import cli

    for row in (rows[2], rows[3], rows[4]):  # Korean input, Japanese, Arabic
        assert (
            cli([str(unicode_sft), "--instruction", row["instruction"], "--input", row["input"], "--json"])
            == 0
        )
        out = capsys.readouterr().out
        shown = json.loads(out)
        assert shown["responses"] == [row["output"]] and shown["finished"] == [True]
        assert row["output"] in out  # printed as characters, not \\u escapes
