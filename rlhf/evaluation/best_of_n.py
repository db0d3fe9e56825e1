"""Best-of-N as a policy: a policy samples N answers to a prompt and a reward model keeps its best one.

`compare` takes `<policy>+bon:N` (e.g. `runs/demo/sft+bon:16`) wherever it takes a checkpoint. One answer of the
Best-of-N policy costs N sampled answers of its base policy (all counted in its generated tokens) plus N
reward-model scores; it trains nothing.
"""

from __future__ import annotations

import math
import re

from rlhf.errors import UserError
from rlhf.evaluation.stats import win

_SPEC = re.compile(r"^(?P<policy>.+)\+bon:(?P<n>[^:/\\]*)$")


def parse_spec(text: str) -> tuple[str, int | None]:
    """(policy path, N) for `<policy>+bon:N`, (text, None) for anything else (a checkpoint path)."""
    m = _SPEC.match(text)
    if m is None:
        return text, None
    n = m["n"]
    if not n.isdigit() or int(n) < 1:
        raise UserError(f"expected <policy>+bon:N with N a whole number >= 1, got {text!r}", "command line")
    return m["policy"], int(n)


def pick_best(scores: list[float]) -> int:
    """The index of the highest score; the first of equal ones (ties go to the earlier sample)."""
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def select(samples: list[list], rm: list[list[float]], n: int) -> list[list[int]]:
    """For each prompt's samples (groups of `n` consecutive ones, each group one Best-of-N answer), the index of the
    sample each group keeps."""
    picks = []
    for scores in rm:
        if len(scores) % n:
            raise ValueError(f"{len(scores)} samples do not split into groups of {n}")
        picks.append([g + pick_best(scores[g : g + n]) for g in range(0, len(scores), n)])
    return picks


def candidate_agreement(
    gold: list[list[float]], rm: list[list[float]], lengths: list[list[int]], n: int
) -> dict:
    """How well the reward model ranks what Best-of-N chooses from, by the gold judge: over every pair of candidates
    in one group (one answer's N samples) that the gold judge scores differently ("decisive"), the share the reward
    model orders the same way (`rm_agreement`) and the share where the shorter answer is the gold judge's better one
    (`shorter_agreement`: a length-only judge to hold the reward model against); equal scores or lengths count
    half. `oracle_accuracy`: the share of groups holding an answer the gold judge accepts (score > 0), the accuracy
    of Best-of-N with a perfect reward model. The agreements are None when no pair is decisive."""
    decisive = agree = shorter = groups = oracle = 0.0
    for golds, scores, lens in zip(gold, rm, lengths):
        for g in range(0, len(golds), n):
            groups += 1
            oracle += max(golds[g : g + n]) > 0
            for i in range(g, g + n):
                for j in range(i + 1, g + n):
                    if golds[i] == golds[j]:
                        continue
                    better, worse = (i, j) if golds[i] > golds[j] else (j, i)
                    decisive += 1
                    agree += win(scores[better], scores[worse])
                    shorter += win(lens[worse], lens[better])  # the better one is the shorter one
    return {
        "decisive_pairs": int(decisive),
        "rm_agreement": agree / decisive if decisive else None,
        "shorter_agreement": shorter / decisive if decisive else None,
        "oracle_accuracy": oracle / groups if groups else None,
    }


def kl_bound(n: int) -> float:
    """KL(Best-of-N || base policy) <= log N - (N - 1) / N (Stiennon et al. 2020; a bound, Beirami et al. 2024).
    Best-of-N has no density to take a Monte-Carlo estimate from, so compare reports this bound."""
    return math.log(n) - (n - 1) / n
