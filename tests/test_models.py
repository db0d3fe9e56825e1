"""rlhf.models: Alpaca's special-token handling and embedding resize, and the loader's error contract."""

from __future__ import annotations

import os

import pytest
import torch

from rlhf.errors import UserError
from rlhf.models import (
    DEFAULT_BOS_TOKEN,
    DEFAULT_EOS_TOKEN,
    DEFAULT_PAD_TOKEN,
    DEFAULT_UNK_TOKEN,
    load_causal_lm,
    load_tokenizer,
    missing_special_tokens,
    smart_tokenizer_and_embedding_resize,
    sync_special_token_ids,
)

WORDS = ["the", "a", "river", "stone", "cloud", "tiger", "apple", "red", "blue", "1", "2", "3"]


def word_tokenizer(**specials):
    """A tiny word-level fast tokenizer with only the special tokens given (e.g. no pad, like GPT-2 or LLaMA)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*dict.fromkeys(specials.values()), *WORDS])}
    unk = specials.get("unk_token")
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk or WORDS[0]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def small_llama(vocab_size: int, tie: bool, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(config)


def test_missing_special_tokens():
    full = word_tokenizer(pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>")
    assert missing_special_tokens(full) == {}
    assert missing_special_tokens(word_tokenizer(eos_token="</s>", bos_token="<s>", unk_token="<unk>")) == {
        "pad_token": DEFAULT_PAD_TOKEN
    }
    # pad == eos (a common "fix" for GPT-2/LLaMA) counts as missing: batched generation and PPO need them apart.
    assert missing_special_tokens(word_tokenizer(pad_token="</s>", eos_token="</s>", unk_token="<unk>")) == {
        "pad_token": DEFAULT_PAD_TOKEN,
        "bos_token": DEFAULT_BOS_TOKEN,
    }
    assert missing_special_tokens(word_tokenizer()) == {
        "pad_token": DEFAULT_PAD_TOKEN,
        "eos_token": DEFAULT_EOS_TOKEN,
        "bos_token": DEFAULT_BOS_TOKEN,
        "unk_token": DEFAULT_UNK_TOKEN,
    }


def test_demo_tokenizer_needs_nothing(demo_base):
    tok = load_tokenizer(demo_base)
    assert missing_special_tokens(tok) == {}
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id}) == 4


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_resize_sets_new_rows_to_the_mean_of_the_old(tie):
    tok = word_tokenizer(eos_token="</s>", unk_token="<unk>")  # no pad, no bos: two rows to add
    model = small_llama(len(tok), tie=tie)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    n_old = len(tok)
    if not tie:
        assert not torch.equal(old_in, old_out), "the untied case must have different input/output matrices"

    added = smart_tokenizer_and_embedding_resize(missing_special_tokens(tok), tok, model)

    assert added == 2 and len(tok) == n_old + 2
    assert tok.pad_token == DEFAULT_PAD_TOKEN and tok.bos_token == DEFAULT_BOS_TOKEN
    assert {tok.pad_token_id, tok.bos_token_id} == {n_old, n_old + 1}
    new_in = model.get_input_embeddings().weight.detach()
    new_out = model.get_output_embeddings().weight.detach()
    assert new_in.shape == (n_old + 2, 32) and new_out.shape == (n_old + 2, 32)
    assert model.config.vocab_size == n_old + 2
    # old rows untouched; each new row is the mean of the old rows of the same matrix
    torch.testing.assert_close(new_in[:n_old], old_in)
    torch.testing.assert_close(new_out[:n_old], old_out)
    for row in (n_old, n_old + 1):
        torch.testing.assert_close(new_in[row], old_in.mean(dim=0), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(new_out[row], old_out.mean(dim=0), rtol=1e-6, atol=1e-7)
    if tie:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    else:
        assert not torch.allclose(new_in[n_old], new_out[n_old])  # each matrix got its own mean

    # the resized model runs on the new ids and agrees with the tokenizer after syncing
    sync_special_token_ids(model, tok)
    assert (
        model.config.pad_token_id == tok.pad_token_id
        and model.generation_config.bos_token_id == tok.bos_token_id
    )
    ids = torch.tensor(
        [[tok.bos_token_id, *tok("the river")["input_ids"], tok.eos_token_id, tok.pad_token_id]]
    )
    assert model(input_ids=ids).logits.shape == (1, 5, n_old + 2)


def test_resize_with_nothing_missing_changes_nothing(demo_base):
    tok = load_tokenizer(demo_base)
    model = load_causal_lm(demo_base)
    before = model.get_input_embeddings().weight.detach().clone()
    assert smart_tokenizer_and_embedding_resize(missing_special_tokens(tok), tok, model) == 0
    assert torch.equal(model.get_input_embeddings().weight, before)


@pytest.mark.parametrize("loader", [load_tokenizer, load_causal_lm], ids=["tokenizer", "model"])
def test_missing_model_path_is_a_user_error(tmp_path, loader):
    for name in (tmp_path / "does-not-exist", "./no/such/dir", "~/no-such-model-dir-xyz"):
        with pytest.raises(UserError, match="model path does not exist") as e:
            loader(name)
        assert e.value.line().startswith("error: ")
    (tmp_path / "empty").mkdir()
    # A tokenizer dir needs tokenizer files (a LoRA adapter dir has them but no config.json); a model dir config.json.
    expected = "no tokenizer_config.json" if loader is load_tokenizer else "no config.json"
    with pytest.raises(UserError, match=expected):
        loader(tmp_path / "empty")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(UserError, match="expected a model directory"):
        loader(tmp_path / "weights.bin")


def test_unknown_hub_id_offline_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"no-such-org/no-such-model: cannot load"):
        load_tokenizer("no-such-org/no-such-model")


def test_wait_policy_is_passive_only_on_shared_cores(monkeypatch):
    """rlhf/_omp.py: OpenMP threads sleep instead of spinning only while other processes use the cores."""
    from rlhf import _omp

    measured = _omp.cores_in_use_by_others(0.02)
    assert measured is None or 0.0 <= measured <= (os.cpu_count() or 1) + 0.01
    for busy, expected in ((1.7, "PASSIVE"), (0.1, None), (None, None)):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.setattr(_omp, "cores_in_use_by_others", lambda busy=busy: busy)
        _omp.choose_wait_policy()
        assert os.environ.get("OMP_WAIT_POLICY") == expected
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice wins
    monkeypatch.setattr(_omp, "cores_in_use_by_others", lambda: 2.0)
    _omp.choose_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_greedy_generation_with_several_samples_repeats_the_one_greedy_answer():
    """`--temperature 0 --n 2` (pairs) or `--num-samples 3` (generate): transformers refuses
    num_return_sequences > 1 without sampling, so greedy decodes once and repeats."""
    from rlhf.generate import SamplingParams, generate
    from rlhf.tasks.demo_model import build_demo_model, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["the quick brown fox jumps over the lazy dog"] * 20, vocab_size=300)
    model = build_demo_model(tok, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    prompts = ["the quick", "a lazy dog"]
    one = generate(model, tok, prompts, SamplingParams(temperature=0.0, max_new_tokens=5), progress=False)
    three = generate(
        model, tok, prompts, SamplingParams(temperature=0.0, max_new_tokens=5, num_samples=3), progress=False
    )
    assert [len(s) for s in three] == [3, 3]
    assert all(c.text == one[i][0].text for i, s in enumerate(three) for c in s)
