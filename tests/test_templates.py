"""rlhf.templates: Alpaca text, chat rendering through the tokenizer's own template, the end-of-turn text."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rlhf.errors import UserError
from rlhf.templates import (
    encode_kwargs,
    end_of_turn,
    format_prompt,
    prompt_messages,
    render_prompt,
    require_chat_template,
)

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _tokenizer(chat_template: str | None, tmp_path) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<unk>", "<|im_start|>", "<|im_end|>", "<eos>", "hi", "there"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>")
    tok.chat_template = chat_template
    tok.save_pretrained(tmp_path / "tok")
    return PreTrainedTokenizerFast.from_pretrained(tmp_path / "tok")


def test_alpaca_is_format_prompt():
    row = {"instruction": "Add 2 and 3.", "input": "x"}
    assert render_prompt(row, "alpaca") == format_prompt("Add 2 and 3.", "x")
    assert encode_kwargs("alpaca") == {}


def test_chat_renders_messages_with_generation_prompt(tmp_path):
    tok = _tokenizer(CHATML, tmp_path)
    row = {"instruction": "hi", "input": "there"}
    assert (
        render_prompt(row, "chat", tok) == "<|im_start|>user\nhi\n\nthere<|im_end|>\n<|im_start|>assistant\n"
    )
    convo = {
        "instruction": "ignored by chat",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    }
    assert prompt_messages(convo) == convo["messages"]
    assert render_prompt(convo, "chat", tok).endswith(
        "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
    )
    assert end_of_turn(tok, "chat") == "<|im_end|>"
    assert end_of_turn(tok, "alpaca") == "<eos>"
    assert encode_kwargs("chat") == {"add_special_tokens": False}


def test_chat_without_a_template_names_the_model_dir(tmp_path):
    tok = _tokenizer(None, tmp_path)
    with pytest.raises(UserError) as e:
        require_chat_template(tok)
    assert str(tmp_path / "tok") in str(e.value) and "chat template" in str(e.value)
    with pytest.raises(UserError):
        render_prompt({"instruction": "hi"}, "chat", tok)
