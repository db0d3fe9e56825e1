"""SFT data: Alpaca rows in, tokenized examples with prompt tokens masked out.

Semantics follow Stanford Alpaca's train.py exactly: source = the prompt template filled in, target = output + EOS,
input_ids = tokenize(source + target) truncated at max_length, labels = input_ids with the first
len(tokenize(source)) positions set to IGNORE_INDEX (-100). Ours tokenizes a whole batch in one call instead
of one string at a time, and each row once rather than twice where that is provably exact (`prompt_lengths`);
bench/sft_throughput.py measures it against Alpaca's per-example tokenization.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

from rlhf.data import load_instructions
from rlhf.errors import UserError
from rlhf.models import IGNORE_INDEX
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


@contextmanager
def tokenizer_threads():
    """Let a fast tokenizer's batch calls use every core (Rust threads; rlhf/__init__.py turns them off by default so
    that a later fork stays quiet and deadlock-free). The variable is read on each call and restored afterwards, so a
    process forked later sees parallelism as configured off and neither warns nor uses the pool. A value the user
    set wins."""
    import rlhf

    if rlhf.TOKENIZERS_PARALLELISM_SET_BY_USER:
        yield
        return
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def preprocess(sources: list[str], targets: list[str], tokenizer, max_length: int) -> dict:
    """Alpaca's `preprocess`, batched. Returns {"input_ids", "labels", "kept"} (kept: indices of rows kept).

    Each row is tokenized once, as source + target; the prompt's length is read off that encoding where it is
    provably tokenize(source)'s length (see `prompt_lengths`), and only the other rows' prompts are tokenized
    on their own. Rows whose prompt alone fills `max_length` have no token left to learn from: they are dropped
    with a counted warning rather than trained on silently."""
    with tokenizer_threads():
        return _preprocess(sources, targets, tokenizer, max_length)


def _preprocess(sources: list[str], targets: list[str], tokenizer, max_length: int) -> dict:
    """`preprocess` on the calling thread (tokenizer threads already enabled)."""
    enc = tokenizer(
        [s + t for s, t in zip(sources, targets)],
        max_length=max_length,
        truncation=True,
        return_attention_mask=False,
    )
    full = enc["input_ids"]
    n_src, _ = prompt_lengths(sources, enc, tokenizer, max_length)
    input_ids, labels, kept = [], [], []
    for i, (ids, n) in enumerate(zip(full, n_src)):
        if n >= len(ids):
            continue
        input_ids.append(ids)
        labels.append([IGNORE_INDEX] * n + ids[n:])
        kept.append(i)
    dropped = len(full) - len(kept)
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {len(full)} rows whose prompt fills max_length={max_length} (no trainable token)",
            stacklevel=2,
        )
    return {"input_ids": input_ids, "labels": labels, "kept": kept}


def prompt_lengths(sources: list[str], full_enc, tokenizer, max_length: int) -> tuple[list[int], int]:
    """len(tokenize(source, truncated at max_length)) for each row, from the encodings of source + target, and
    how many rows were read off those encodings (the others' prompts were tokenized on their own).

    When the tokenizer splits text into pre-tokens by local rules and encodes each pre-token on its own (GPT-2's
    byte-level regex, digit splitting; see `splits_locally`), and source + target has a pre-token boundary
    exactly where the source ends, the source alone splits into the same pre-tokens as the full text up to that
    point, so tokenize(source) is a prefix of tokenize(source + target) and its length is the number of tokens
    before the boundary. That is checked per row on the full encoding's offsets and word (pre-token) ids; where
    it does not hold (e.g. an answer starting with '"' or '-' forms one pre-token with the prompt's last ':' under
    GPT-2's regex, about 3% of real Alpaca rows) or the boundary lies past the truncated tokens, that row's
    prompt is tokenized on its own, exactly as Alpaca does. Tokenizers without the property take that path for
    every row."""
    n_src: list[int | None] = [None] * len(sources)
    encodings = full_enc.encodings if splits_locally(tokenizer) else None
    if encodings is not None:
        for i, (source, e) in enumerate(zip(sources, encodings)):
            end = len(source)
            if end == 0:
                continue
            last = e.char_to_token(end - 1)  # the token holding the prompt's last character
            if last is None or last + 1 >= len(e) or e.token_to_chars(last)[1] != end:
                continue
            nxt = e.token_to_word(last + 1)
            if nxt is not None and nxt != e.token_to_word(last) and e.token_to_chars(last + 1)[0] >= end:
                n_src[i] = last + 1
    rest = [i for i, n in enumerate(n_src) if n is None]
    if rest:
        own = tokenizer(
            [sources[i] for i in rest], max_length=max_length, truncation=True, return_attention_mask=False
        )["input_ids"]
        for i, ids in zip(rest, own):
            n_src[i] = len(ids)
    return n_src, len(sources) - len(rest)


_LOCAL_PRE_TOKENIZERS = {"ByteLevel", "Digits"}


def splits_locally(tokenizer) -> bool:
    """Whether the prompt-length shortcut in `prompt_lengths` is exact for this tokenizer: a fast (Rust)
    tokenizer with no normalizer, right truncation, pre-tokenizers whose splits depend only on the text up to
    the split's end plus at most a look-ahead that a boundary check catches (GPT-2's byte-level regex, digit
    splitting), a deterministic BPE model (no dropout), special tokens added only in front of the text, and no
    added token that strips whitespace or matches whole words only (those look past their own text).

    Anything else is answered False and takes the plain path (every prompt tokenized on its own)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "truncation_side", "right") != "right" or backend.normalizer:
        return False
    try:
        pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer else None
        post = json.loads(backend.post_processor.__getstate__()) if backend.post_processor else None
    except (AttributeError, TypeError, ValueError):
        return False
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre]
    for step in steps:
        if step is None or step.get("type") not in _LOCAL_PRE_TOKENIZERS:
            return False
        if step["type"] == "ByteLevel" and not step.get("use_regex", True):
            return False
    model = backend.model  # its state holds the whole vocabulary: read the two attributes that matter
    if type(model).__name__ != "BPE" or getattr(model, "dropout", None) not in (None, 0, 0.0):
        return False
    if post is not None:
        single = post.get("single") if post.get("type") == "TemplateProcessing" else None
        # [SpecialToken..., Sequence A]: nothing after the text, so the prompt's tokens stay a prefix
        if single is None or not single or "Sequence" not in single[-1]:
            return False
        if any("Sequence" in piece for piece in single[:-1]):
            return False
    for added in backend.get_added_tokens_decoder().values():
        if added.lstrip or added.rstrip or added.single_word:
            return False
    return True


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
