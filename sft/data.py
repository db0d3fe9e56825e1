"""SFT data: Alpaca rows in, tokenized examples with prompt tokens masked out.

Semantics follow Stanford Alpaca's train.py exactly: source = the prompt template filled in, target = output + EOS,
input_ids = tokenize(source + target) truncated at max_length, labels = input_ids with the first
len(tokenize(source)) positions set to IGNORE_INDEX (-100). Ours gives the same ids and labels with batched calls
on the Rust tokenizer instead of one string at a time, the template's shared header tokenized once, and each row
once rather than twice (prompt and response encoded apart and joined, or the prompt's length read off the joint
encoding) wherever that is provably exact for the tokenizer (`header_splits_off`, `response_splits_off`,
`prompt_lengths`); bench/sft_throughput.py measures it against Alpaca's per-example tokenization.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from contextlib import contextmanager
from pathlib import Path

from rlhf.data import load_instructions
from rlhf.errors import UserError
from rlhf.models import IGNORE_INDEX
from rlhf.runtime import tokenizer_threads
from rlhf.templates import PROMPT_DICT, TEMPLATE_HEADERS, TEMPLATE_TAIL, format_prompt

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
    """Alpaca's `preprocess`, batched. Returns {"input_ids", "labels", "kept", "paths"} (kept: indices of rows
    kept; paths: how many rows took each tokenization path below).

    Each row is tokenized once (`encode_after_header`; the plain path, `prompt_lengths`, for prompts that are not
    the template's or tokenizers where the shortcuts are not exact), and only prompts whose length cannot be
    read off that encoding are tokenized on their own. Rows whose prompt alone fills `max_length` have no token
    left to learn from: they are dropped with a counted warning rather than trained on silently."""
    with tokenizer_threads():
        return _preprocess(sources, targets, tokenizer, max_length)


def _preprocess(sources: list[str], targets: list[str], tokenizer, max_length: int) -> dict:
    """`preprocess` on the calling thread (tokenizer threads already enabled)."""
    full: list[list[int] | None] = [None] * len(sources)
    n_src: list[int | None] = [None] * len(sources)
    # how many rows took each path (bench/sft_throughput.py prints them)
    paths = {"header_once": 0, "encoded_apart": 0, "read_off_joint": 0, "prompt_own": 0}
    for header, group in rows_by_shared_header(sources, tokenizer, max_length).items():
        encode_after_header(header, group, sources, targets, tokenizer, max_length, full, n_src, paths)
    plain = [i for i, ids in enumerate(full) if ids is None]
    if plain:
        enc = tokenizer(
            [sources[i] + targets[i] for i in plain],
            max_length=max_length,
            truncation=True,
            return_attention_mask=False,
        )
        lengths, read_off = prompt_lengths([sources[i] for i in plain], enc, tokenizer, max_length)
        paths["read_off_joint"] += read_off
        paths["prompt_own"] += len(plain) - read_off
        for i, ids, n in zip(plain, enc["input_ids"], lengths):
            full[i], n_src[i] = ids, n
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
            stacklevel=3,
        )
    return {"input_ids": input_ids, "labels": labels, "kept": kept, "paths": paths}


def rows_by_shared_header(sources: list[str], tokenizer, max_length: int) -> dict[str, list[int]]:
    """The rows whose prompt starts with one of the templates' fixed headers (the text before "{instruction}")
    in a way that lets the header be tokenized once for all of them (`header_splits_off`), grouped by header.
    Rows in no group take the plain path."""
    headers = [h for h in TEMPLATE_HEADERS if header_splits_off(tokenizer, h, max_length)]
    groups: dict[str, list[int]] = {h: [] for h in headers}
    for i, source in enumerate(sources):
        for h in headers:
            # the character after the header must not be whitespace: GPT-2's regex would join it to the
            # header's final newline (see header_splits_off)
            if source.startswith(h) and len(source) > len(h) and not source[len(h)].isspace():
                groups[h].append(i)
                break
    return {h: rows for h, rows in groups.items() if rows}


def header_splits_off(tokenizer, header: str, max_length: int) -> bool:
    """Whether tokenize(header + rest) == tokenize(header) + tokenize(rest, no special tokens) for every `rest`
    that starts with a non-whitespace character, so that the header shared by all Alpaca prompts (a third of
    their text) is tokenized once instead of once per row.

    It holds for the tokenizers `splits_locally` accepts when, in addition, (1) no ByteLevel step adds a prefix
    space (it would add one to `rest` alone), (2) the header ends in a whitespace character other than a space
    after a non-whitespace one: under GPT-2's regex that character is then a pre-token of its own whenever the
    next character is not whitespace (`\\s+(?!\\S)` fails, `\\s+` takes it alone; only a literal space joins a
    following word), and nothing earlier in the header looks past it; digit splitting only cuts inside
    pre-tokens; (3) no added token could start inside the header and end in `rest` (added tokens are matched on
    the raw text before pre-tokenization). BPE then encodes each pre-token on its own, so the ids concatenate;
    special tokens come only in front (`splits_locally`), and right truncation of the whole equals truncating
    `rest` to what the header leaves."""
    if not splits_locally(tokenizer) or len(header) < 2:
        return False
    last, before = header[-1], header[-2]
    if not last.isspace() or last == " " or before.isspace():
        return False
    backend = tokenizer.backend_tokenizer
    pre = json.loads(backend.pre_tokenizer.__getstate__())
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if any(step["type"] == "ByteLevel" and step.get("add_prefix_space") for step in steps):
        return False
    if added_token_could_span(tokenizer, header):
        return False
    return len(header_ids(tokenizer, header)) < max_length


def header_ids(tokenizer, header: str) -> list[int]:
    return tokenizer(header, return_attention_mask=False)["input_ids"]


def encode_after_header(header, rows, sources, targets, tokenizer, max_length, full, n_src, paths) -> None:
    """Fill full[i] (= tokenize(source + target)[:max_length]) and n_src[i] (= len(tokenize(source)[:max_length]))
    for `rows`, which all start with `header`: the header's ids once, then one batch call straight on the Rust
    tokenizer (no per-row conversion into a BatchEncoding) over what follows it.

    Where the prompt ends with the template's tail ("### Response:") and the response starts with a letter, digit
    or whitespace (`response_splits_off`), the prompt's rest and the response are encoded as two texts and their
    ids concatenated: the prompt's length is then simply its own token count. The other rows (e.g. a response
    starting with '"' or '-', which GPT-2's regex joins to the ':') are encoded as one text, the prompt's length
    read off that encoding where it ends on a pre-token boundary (`prompt_end`), else counted on its own."""
    backend = tokenizer.backend_tokenizer
    head = header_ids(tokenizer, header)
    cut, room = len(header), max_length - len(head)
    split_ok = response_splits_off(tokenizer, TEMPLATE_TAIL)
    split, joint = [], []
    for i in rows:
        (split if split_ok and response_apart(sources[i], targets[i]) else joint).append(i)
    paths["header_once"] += len(rows)
    paths["encoded_apart"] += len(split)
    with raw_backend(backend, room):  # each piece truncated at what the header leaves; the whole cut below
        texts = [t for i in split for t in (sources[i][cut:], targets[i])]
        # no offsets needed here: the fast variant skips tracking them (a quarter of the encode time)
        encode_ids = getattr(backend, "encode_batch_fast", backend.encode_batch)
        encodings = encode_ids(texts, add_special_tokens=False)
        for k, i in enumerate(split):
            prompt, response = encodings[2 * k].ids, encodings[2 * k + 1].ids
            ids = head + prompt + response
            full[i] = ids[:max_length] if len(ids) > max_length else ids
            n_src[i] = len(head) + len(prompt)
        encodings = backend.encode_batch(
            [sources[i][cut:] + targets[i] for i in joint], add_special_tokens=False
        )
        own = []
        for i, e in zip(joint, encodings):
            full[i] = head + e.ids
            n = prompt_end(e, len(sources[i]) - cut)
            if n is None:
                own.append(i)
            else:
                n_src[i] = len(head) + n
        paths["read_off_joint"] += len(joint) - len(own)
        paths["prompt_own"] += len(own)
        if own:
            prompts = backend.encode_batch([sources[i][cut:] for i in own], add_special_tokens=False)
            for i, e in zip(own, prompts):
                n_src[i] = len(head) + len(e.ids)


def response_splits_off(tokenizer, tail: str) -> bool:
    """Whether tokenize(P + R) == tokenize(P) + tokenize(R) (special tokens aside) for every prompt rest P that ends
    with `tail` and every response R that starts with a letter, digit or whitespace character, for a tokenizer
    `header_splits_off` accepted. Under GPT-2's regex a run of punctuation (` ?[^\\s\\p{L}\\p{N}]+`) ends before a
    letter, digit or whitespace, so when `tail` ends in punctuation the pre-token holding it ends with P, and the
    scan that starts R's pre-tokens restarts there exactly as on R alone (the regex looks ahead, never behind);
    digit splitting cuts only inside pre-tokens. Plus: no added token could start inside `tail` and end in R."""
    if not tail or tail[-1].isalnum() or tail[-1].isspace():
        return False
    return not added_token_could_span(tokenizer, tail)


def response_apart(source: str, target: str) -> bool:
    """Whether this row's response is encoded apart from its prompt (when `response_splits_off` holds): the prompt
    ends with the template's tail and the response starts with a letter, digit or whitespace character."""
    first = target[:1]
    return bool(first) and (first.isalnum() or first.isspace()) and source.endswith(TEMPLATE_TAIL)


def added_token_could_span(tokenizer, before: str) -> bool:
    """Whether an added token could start inside `before` and end in the text after it (added tokens are matched
    on the raw text before pre-tokenization): some proper prefix of its content is a suffix of `before`."""
    for added in tokenizer.backend_tokenizer.get_added_tokens_decoder().values():
        text = added.content
        if any(before.endswith(text[:k]) for k in range(1, len(text))):
            return True
    return False


@contextmanager
def raw_backend(backend, max_length: int):
    """The Rust tokenizer with right truncation at `max_length` and no padding, its settings restored after (the
    transformers wrapper sets both on each of its own calls)."""
    truncation, padding = backend.truncation, backend.padding
    backend.no_padding()
    backend.enable_truncation(max_length, direction="right")
    try:
        yield
    finally:
        backend.no_truncation() if truncation is None else backend.enable_truncation(**truncation)
        if padding is not None:
            backend.enable_padding(**padding)


def prompt_end(encoding, end: int) -> int | None:
    """The number of tokens of `encoding` before character `end` when `end` is a pre-token boundary inside the
    encoded (possibly truncated) tokens, else None (see `prompt_lengths`)."""
    if end == 0:
        return None
    last = encoding.char_to_token(end - 1)  # the token holding the prompt's last character
    if last is None or last + 1 >= len(encoding) or encoding.token_to_chars(last)[1] != end:
        return None
    nxt = encoding.token_to_word(last + 1)
    if (
        nxt is not None
        and nxt != encoding.token_to_word(last)
        and encoding.token_to_chars(last + 1)[0] >= end
    ):
        return last + 1
    return None


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
    if splits_locally(tokenizer):
        for i, (source, e) in enumerate(zip(sources, full_enc.encodings)):
            n_src[i] = prompt_end(e, len(source))
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
