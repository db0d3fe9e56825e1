"""SFT data: Alpaca rows in, tokenized examples with prompt tokens masked out.

Stanford Alpaca's train.py, batched: source = the prompt template filled in, target = output + EOS,
input_ids = tokenize(source + target) truncated at max_length, labels = input_ids with the first
len(tokenize(source)) positions set to IGNORE_INDEX (-100). Each list of texts goes through the tokenizer in one
call (Alpaca calls it once per string); the ids and labels are the same (tests/test_sft_preprocess.py).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from rlhf.data import load_instructions
from rlhf.errors import UserError
from rlhf.models import IGNORE_INDEX
from rlhf.runtime import tokenizer_threads
from rlhf.templates import PROMPT_DICT, format_prompt

__all__ = [
    "IGNORE_INDEX",
    "PROMPT_DICT",
    "load_alpaca",
    "preprocess",
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
    dropped = len(examples) - len(kept)
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {len(examples)} rows whose prompt fills max_length={max_length} "
            "(no trainable token)",
            stacklevel=2,
        )
    return {"input_ids": input_ids, "labels": labels, "kept": kept}


def _tokenize(texts: list[str], tokenizer, max_length: int) -> list[list[int]]:
    """Alpaca's `_tokenize_fn`: each text's ids, truncated at max_length (no padding, so a length is the count)."""
    return tokenizer(texts, max_length=max_length, truncation=True, return_attention_mask=False)["input_ids"]


def fingerprint_rows(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["instruction"], r.get("input", ""), r["output"]], ensure_ascii=False).encode())
    return h.hexdigest()


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
