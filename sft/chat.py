"""Chat examples: a conversation rendered with the tokenizer's chat template, loss on the assistant turns only.

What is trained: each assistant reply's content and the end-of-turn text the template writes after it
(`rlhf.templates.end_of_turn`: ChatML's `<|im_end|>`, Llama 3's `<|eot_id|>`), in every assistant turn from the
example's `train_from` on; not the role headers, not the text between turns, not the whitespace after the
end-of-turn text. A rollout that stops at the end-of-turn token then ends the way these examples do.

How: the whole conversation is rendered once and tokenized once (chat text holds its own special tokens, so
`encode_kwargs("chat")`: no extra BOS), and each trained span is found in characters by rendering prefixes:
assistant turn i starts where `render(messages[:i], add_generation_prompt=True)` ends (the prompt a model sees
before writing that reply) and ends after the end-of-turn text in `render(messages[:i + 1])`. The tokenizer's
offsets map the spans to tokens: a token is trained when any of its characters lies in a span, transformers' own
rule for templates that mark replies with `{% generation %}` (`return_assistant_tokens_mask`). Why this way:
- it works for any template that renders a conversation's prefix as a prefix of its rendering (ChatML, Llama 3,
  Gemma, Mistral, ...), without the `{% generation %}` markers most templates lack;
- the token ids are exactly those of the whole rendered text, what the model reads at inference. Tokenizing
  piece by piece instead would make ids the text does not have (SentencePiece tokenizers put a "▁" in front of
  every piece).
Templates that rewrite earlier turns once later ones follow (some drop reasoning from past replies) break the
prefix property: such a conversation is refused with its row named rather than trained on misplaced labels.

Truncation at max_length cuts the tokenized text: a turn cut short is trained up to the cut (no end-of-turn
token), as Alpaca trains a cut response; an example left without a trained token is dropped (counted by the
caller).
"""

from __future__ import annotations

import numpy as np

from rlhf.errors import UserError
from rlhf.models import IGNORE_INDEX
from rlhf.templates import encode_kwargs, end_of_turn, prompt_messages, render_chat


def conversation(example: dict) -> tuple[list[dict], int]:
    """The messages of an example and the first message whose assistant turns are trained. An Alpaca example is
    one user turn (the instruction, a blank line, the input) and the assistant's reply."""
    if "messages" in example:
        return example["messages"], example.get("train_from", 0)
    return [*prompt_messages(example), {"role": "assistant", "content": example["output"]}], 1


def assistant_spans(
    tokenizer, messages: list[dict], train_from: int = 0, *, eot: str | None = None, where=("data", None)
) -> tuple[str, list[tuple[int, int]]]:
    """(the rendered conversation, the [start, end) character spans of its trained assistant turns)."""
    eot = eot or end_of_turn(tokenizer, "chat")
    full = _render(tokenizer, messages, False, where)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or i < train_from:
            continue
        before = _render(tokenizer, messages[:i], True, where)
        through = full if i == len(messages) - 1 else _render(tokenizer, messages[: i + 1], False, where)
        if not (through.startswith(before) and full.startswith(through)):
            raise UserError(
                f"message {i + 1}: the chat template renders the conversation before this reply differently "
                "from the whole conversation (it rewrites earlier turns), so the reply cannot be located",
                *where,
            )
        end = through.rfind(eot, len(before))
        if end < 0:
            raise UserError(
                f"message {i + 1}: the chat template writes no end-of-turn text ({eot!r}) after the reply, so "
                "the model could not learn to stop; use template: alpaca",
                *where,
            )
        spans.append((len(before), end + len(eot)))
    return full, spans


def _render(tokenizer, messages, add_generation_prompt: bool, where) -> str:
    from jinja2 import TemplateError

    try:
        return render_chat(tokenizer, messages, add_generation_prompt=add_generation_prompt)
    except TemplateError as e:
        raise UserError(f"the chat template refused this conversation ({e})", *where) from None


def trained_tokens(offsets, spans) -> np.ndarray:
    """Which tokens (given their [start, end) character offsets) touch a span; an empty token (start == end)
    counts where it sits."""
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    start, end = off[:, 0], off[:, 1]
    trained = np.zeros(len(off), dtype=bool)
    for a, b in spans:
        trained |= (start < b) & ((end > a) | ((start == end) & (start >= a)))
    return trained


def encode_conversations(examples: list[dict], tokenizer, max_length: int) -> dict:
    """{"input_ids", "labels", "kept"} for conversation (or Alpaca) examples under the chat template; kept: the
    indices of the examples that have a trained token within max_length."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            "template 'chat' needs a fast (Rust) tokenizer, for the character offsets of its tokens",
            getattr(tokenizer, "name_or_path", None) or "the model",
        )
    eot = end_of_turn(tokenizer, "chat")
    texts, all_spans = [], []
    for ex in examples:
        messages, train_from = conversation(ex)
        where = (ex.get("_path", "data"), ex.get("_row"))
        text, spans = assistant_spans(tokenizer, messages, train_from, eot=eot, where=where)
        texts.append(text)
        all_spans.append(spans)
    enc = tokenizer(
        texts,
        max_length=max_length,
        truncation=True,
        return_offsets_mapping=True,
        return_attention_mask=False,
        **encode_kwargs("chat"),
    )
    input_ids, labels, kept = [], [], []
    for i, (ids, offsets, spans) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], all_spans)):
        trained = trained_tokens(offsets, spans)
        if not trained.any():
            continue
        input_ids.append(ids)
        labels.append([t if keep else IGNORE_INDEX for t, keep in zip(ids, trained.tolist())])
        kept.append(i)
    return {"input_ids": input_ids, "labels": labels, "kept": kept}
