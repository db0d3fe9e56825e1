"""SFT demonstrations for the constraints task: the source's own reference answer, rewritten to satisfy the
prompt's constraints (for an optional short SFT before RLHF, and for a demo-size model to learn the format).

The rewrite is mechanical (cut to the first sentences or words, drop a word, prepend or append a phrase, bullets,
paragraphs, JSON, quotes, case), and every demonstration is checked with the gold judge: a rewrite that does not
satisfy its constraints (a reference too short for "at least 40 words", or for 4 bullet points) is dropped, never
written.
"""

from __future__ import annotations

import json
import random
import re

from rlhf.tasks.constraints import Item, check_all, make_item
from rlhf.tasks.constraints_checks import TYPES, sentences, words


def _trim_words(text: str, n: int) -> str:
    tokens = text.split()
    while tokens and len(words(" ".join(tokens))) > n:
        tokens.pop()
    out = " ".join(tokens).rstrip(",;:")
    return out if not out or out[-1] in ".!?" else out + "."


def demonstration(item: Item, reference: str) -> str | None:
    """`reference` rewritten to satisfy every constraint of `item`, or None when it cannot be."""
    c = {k.type: k.values for k in item.constraints}
    text = " ".join(reference.split())  # one line: structure comes from the constraints below
    if not words(text):
        return None
    if "max_sentences" in c:
        text = " ".join(sentences(text)[: c["max_sentences"]["n"]])
    if "exclude_keyword" in c:
        word = re.escape(c["exclude_keyword"]["word"])
        text = re.sub(rf"(?i)(?<![\w']){word}(?![\w'])\s*", "", text).strip()
    if "include_keyword" in c and c["include_keyword"]["word"] not in words(text):
        text = f"{text} {c['include_keyword']['word'].capitalize()} matters here."
    extra = sum(len(words(v.get("phrase", ""))) for v in c.values()) + ("json" in c)
    if "max_words" in c:
        text = _trim_words(text, c["max_words"]["n"] - extra)
    parts = sentences(text)
    if "bullets" in c:
        n = c["bullets"]["n"]
        if len(parts) < n:
            return None
        text = "\n".join(f"* {s}" for s in [*parts[: n - 1], " ".join(parts[n - 1 :])])
    if "paragraphs" in c:
        n = c["paragraphs"]["n"]
        if len(parts) < n:
            return None
        size = -(-len(parts) // n)
        groups = [parts[i : i + size] for i in range(0, len(parts), size)]
        if len(groups) != n:
            return None
        text = "\n\n".join(" ".join(g) for g in groups)
    if "start_with" in c:
        text = f"{c['start_with']['phrase']}: {text}"
    if "end_with" in c:
        text = f"{text} {c['end_with']['phrase']}"
    if "no_commas" in c:
        text = text.replace(",", "")
    if "json" in c:
        text = json.dumps({"answer": text}, ensure_ascii=False)
    if "quotes" in c:
        text = f'"{text}"'
    if "lowercase" in c:
        text = text.lower()
    if "capitals" in c:
        text = text.upper()
    return text


def demonstration_rows(
    n: int, sources: dict[str, str], *, seed: int = 0, types: tuple[str, ...] = TYPES, tries: int = 8
) -> list[dict]:
    """`n` SFT rows from the train split's instructions: a constrained prompt and a demonstration that satisfies
    it (up to `tries` constraint draws per instruction; instructions with no usable demonstration are skipped)."""
    from rlhf.tasks.constraints import split_of

    rng = random.Random(seed)
    pool = [b for b, ref in sources.items() if split_of(b) == "train" and words(ref)]
    if not pool:
        raise ValueError("no train instruction with a reference answer to rewrite into demonstrations")
    rows: list[dict] = []
    for _ in range(max(1, -(-n // len(pool)) * 2)):  # cycle; a round may skip instructions
        for base in rng.sample(pool, len(pool)):
            for _ in range(tries):
                item = make_item(base, types, "train", rng)
                demo = demonstration(item, sources[base])
                prompt = item.instruction()
                if demo is not None and all(check_all(item, prompt, demo).values()):
                    kind = "+".join(k.type for k in item.constraints)
                    rows.append({"instruction": prompt, "input": "", "output": demo, "kind": kind})
                    break
            if len(rows) == n:
                return rows
    raise ValueError(f"cannot write {n} demonstrations: only {len(rows)} from {len(pool)} train instructions")
