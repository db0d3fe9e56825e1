"""Denoising pairwise labels by aggregating each prompt's labels into one ranking (reward `label_aggregation`).

When several responses of one prompt are labelled pairwise (`rlhf annotate --pairing all`: all 15 pairs of 6
samples), one noisy label can be outvoted by the others: a response that wins most of its pairs is probably better
than one that loses most of its pairs, whatever the label between those two said. `borda` scores each response by
its net wins over its prompt's labelled pairs (wins minus losses, a Borda count) and orders every labelled pair by
those scores: a pair whose label disagrees with its prompt's ranking is flipped, a pair whose two responses score
the same is dropped. With one pair per prompt it changes nothing. It denoises only what was labelled: pairs judged
ties (dropped by `rlhf annotate`) stay unlabelled.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from rlhf.preferences import prompt_key, swapped

AGGREGATIONS = ("none", "borda")


def borda(pairs: list[dict]) -> tuple[list[dict], dict]:
    """(pairs ordered by their prompt's Borda count, in their original order; counts of kept / flipped /
    dropped pairs)."""
    net: dict[tuple, Counter] = defaultdict(Counter)
    for p in pairs:
        score = net[prompt_key(p)]
        score[p["chosen"]] += 1
        score[p["rejected"]] -= 1
    out, flipped, dropped = [], 0, 0
    for p in pairs:
        score = net[prompt_key(p)]
        if score[p["chosen"]] > score[p["rejected"]]:
            out.append(p)
        elif score[p["chosen"]] < score[p["rejected"]]:
            out.append(swapped(p))
            flipped += 1
        else:
            dropped += 1
    return out, {"kept": len(out) - flipped, "flipped": flipped, "dropped": dropped}


def aggregate(pairs: list[dict], how: str) -> tuple[list[dict], dict]:
    """`pairs` as `how` (one of AGGREGATIONS) aggregates them, with its counts ({} for none)."""
    if how == "none":
        return pairs, {}
    if how == "borda":
        return borda(pairs)
    raise ValueError(f"unknown label aggregation {how!r}; expected one of {', '.join(AGGREGATIONS)}")
