"""SFT data: examples (sft.formats) in, tokenized examples with what is not trained masked out (-100).

Alpaca examples under the Alpaca template follow Stanford Alpaca's train.py, batched: source = the prompt
template filled in, target = output + EOS, input_ids = tokenize(source + target) truncated at max_length,
labels = input_ids with the first len(tokenize(source)) positions set to IGNORE_INDEX (-100). Each list of texts
goes through the tokenizer in one call (Alpaca calls it once per string); the ids and labels are the same
(tests/test_sft_preprocess.py). Under the chat template every example but text is a conversation (sft.chat);
text examples are text + EOS with every token trained (TRL's language modelling), under either template.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from rlhf.data import load_instructions
from rlhf.errors import UserError
from rlhf.models import IGNORE_INDEX
from rlhf.runtime import tokenizer_threads
from rlhf.templates import PROMPT_DICT, format_prompt
from sft.chat import encode_conversations
from sft.formats import example_kind, fingerprint_rows

__all__ = [
    "IGNORE_INDEX",
    "PROMPT_DICT",
    "load_alpaca",
    "preprocess",
    "encode_examples",
    "sources_and_targets",
    "fingerprint_rows",
]


def load_alpaca(path: str | Path) -> list[dict]:
    """Alpaca rows from .json / .jsonl / a saved datasets dir, every row validated (see rlhf.data)."""
    return load_instructions(path)


def sources_and_targets(
    rows: list[dict], eos_token: str, template: str = "alpaca"
) -> tuple[list[str], list[str]]:
    sources = [format_prompt(r["instruction"], r.get("input", ""), template) for r in rows]
    targets = [f"{r['output']}{eos_token}" for r in rows]
    return sources, targets


def preprocess(sources: list[str], targets: list[str], tokenizer, max_length: int) -> dict:
    """Alpaca's `preprocess`, batched. Returns {"input_ids", "labels", "kept"} (kept: indices of the rows kept).

    Rows whose prompt alone fills `max_length` have no token left to learn from: they are dropped with a counted
    warning rather than trained on silently (Alpaca keeps them with every label -100)."""
    out = _alpaca_labels(sources, targets, tokenizer, max_length)
    _warn_dropped(len(sources), len(out["kept"]), max_length)
    return out


def _warn_dropped(n_rows: int, n_kept: int, max_length: int) -> None:
    if n_kept < n_rows:
        warnings.warn(
            f"dropped {n_rows - n_kept} of {n_rows} rows whose prompt fills max_length={max_length} "
            "(no trainable token)",
            stacklevel=3,
        )


def _alpaca_labels(sources: list[str], targets: list[str], tokenizer, max_length: int) -> dict:
    examples = [s + t for s, t in zip(sources, targets)]
    with tokenizer_threads():  # the Rust tokenizer's threads, for these two batch calls only
        examples_ids = _tokenize(examples, tokenizer, max_length)
        sources_ids = _tokenize(sources, tokenizer, max_length)
    input_ids, labels, kept = [], [], []
    for i, (ids, source_ids) in enumerate(zip(examples_ids, sources_ids)):
        n_source = len(source_ids)
        if n_source >= len(ids):
            continue
        input_ids.append(ids)
        labels.append([IGNORE_INDEX] * n_source + ids[n_source:])
        kept.append(i)
    return {"input_ids": input_ids, "labels": labels, "kept": kept}


def _text_labels(texts: list[str], tokenizer, max_length: int) -> dict:
    """TRL's language modelling: the text + EOS (unless it ends with EOS), every token trained."""
    eos = tokenizer.eos_token
    texts = [t if t.endswith(eos) else t + eos for t in texts]
    with tokenizer_threads():
        ids = _tokenize(texts, tokenizer, max_length)
    return {"input_ids": ids, "labels": [list(x) for x in ids], "kept": list(range(len(ids)))}


def encode_examples(examples: list[dict], tokenizer, max_length: int, template: str) -> dict:
    """{"input_ids", "labels", "kept"} for a mix of Alpaca, conversation and text examples (sft.formats), in the
    examples' order; kept: the indices of the examples kept. Examples left without a trained token are dropped
    with one counted warning."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        kind = example_kind(ex)
        if kind == "alpaca" and template == "chat":
            kind = "conversation"  # one user turn and the reply
        elif kind == "conversation" and template != "chat":
            raise ValueError("conversation examples need template 'chat' (sft.formats makes Alpaca ones)")
        groups.setdefault(kind, []).append(i)
    encoded: dict[int, tuple[list[int], list[int]]] = {}
    for kind, idx in groups.items():
        part = [examples[i] for i in idx]
        if kind == "alpaca":
            out = _alpaca_labels(
                *sources_and_targets(part, tokenizer.eos_token, template), tokenizer, max_length
            )
        elif kind == "conversation":
            with tokenizer_threads():
                out = encode_conversations(part, tokenizer, max_length)
        else:
            out = _text_labels([e["text"] for e in part], tokenizer, max_length)
        for k, j in enumerate(out["kept"]):
            encoded[idx[j]] = (out["input_ids"][k], out["labels"][k])
    kept = sorted(encoded)
    _warn_dropped(len(examples), len(kept), max_length)
    return {
        "input_ids": [encoded[i][0] for i in kept],
        "labels": [encoded[i][1] for i in kept],
        "kept": kept,
    }


def _tokenize(texts: list[str], tokenizer, max_length: int) -> list[list[int]]:
    """Alpaca's `_tokenize_fn`: each text's ids, truncated at max_length (no padding, so a length is the count)."""
    return tokenizer(texts, max_length=max_length, truncation=True, return_attention_mask=False)["input_ids"]


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded held-out split for eval loss."""
    import random

    if not 0 <= eval_fraction < 1:
        raise UserError(
            f"eval_fraction must be in [0, 1), got {eval_fraction}", "config", "key 'eval_fraction'"
        )
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    n_eval = int(round(len(rows) * eval_fraction))
    return [rows[i] for i in idx[n_eval:]], [rows[i] for i in idx[:n_eval]]
