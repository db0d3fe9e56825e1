"""The demo's tiny model: a byte-level BPE tokenizer trained on the demo's text and a small Llama built from a
config, saved as an ordinary HF dir (`rlhf demo-model`) so every stage loads it exactly like a pretrained model."""

from __future__ import annotations

import random

import torch

from rlhf.models import DEFAULT_BOS_TOKEN, DEFAULT_EOS_TOKEN, DEFAULT_UNK_TOKEN, sync_special_token_ids
from rlhf.tasks.demo import ALL_KINDS, demonstration, make_tasks
from rlhf.templates import format_prompt


def tokenizer_corpus(extra_rows: list[dict] = (), seed: int = 0) -> list[str]:
    """Text to train the demo BPE tokenizer on: every task kind, every demonstration style, both templates."""
    rng = random.Random(seed)
    texts = []
    for task in make_tasks(3000, seed, ALL_KINDS, split=None):
        for style in ("bare", "verbose", "wrong"):
            texts.append(format_prompt(task.instruction, task.input) + demonstration(task, style, rng))
    for row in extra_rows:
        texts.append(format_prompt(row["instruction"], row.get("input", "")) + row.get("output", ""))
    return texts


def train_bpe_tokenizer(texts, vocab_size: int = 1000):
    """A byte-level BPE tokenizer (any UTF-8 text round-trips: Korean, emoji, ...) with Alpaca's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", DEFAULT_EOS_TOKEN, DEFAULT_BOS_TOKEN, DEFAULT_UNK_TOKEN]
    tok = Tokenizer(models.BPE())
    # Digits are split one per token and apart from the space before them (as LLaMA's tokenizer does), so
    # "7" is the same token in "3, 7" and in "7": copying a number from the input is one mapping, not two.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token=DEFAULT_EOS_TOKEN,
        bos_token=DEFAULT_BOS_TOKEN,
        unk_token=DEFAULT_UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )


# ChatML, as SmolLM2-Instruct and Qwen2.5-Instruct write it (a system turn only when the conversation has one).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def add_chatml(tokenizer):
    """Give a demo tokenizer a chat template: ChatML's two special tokens and template, with `<|im_end|>` as EOS
    (as SmolLM2-Instruct has it), so the tiny model can stand in for a chat model in tests and demos. Call it before
    building the model (the vocabulary grows by two)."""
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_demo_model(
    tokenizer,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 384,
    max_positions: int = 256,
    seed: int = 0,
):
    """A small Llama (about half a million parameters at the defaults) for the embedded CPU demo."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    sync_special_token_ids(model, tokenizer)
    return model
