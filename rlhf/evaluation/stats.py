"""The statistics compare reports: bootstrap CIs over prompts, win-rates (ties count 0.5), distinct-n."""

from __future__ import annotations

import random
import statistics


def bootstrap_ci(
    values: list[float], *, n: int = 1000, seed: int = 0, stat=statistics.fmean
) -> tuple[float, float]:
    """95% percentile bootstrap CI of `stat` over `values` (resampling prompts)."""
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v
    rng = random.Random(seed)
    k = len(values)
    boots = sorted(stat([values[rng.randrange(k)] for _ in range(k)]) for _ in range(n))
    return boots[int(0.025 * n)], boots[min(n - 1, int(0.975 * n))]


def win(x: float, y: float) -> float:
    """1 if x is better (higher), 0.5 for a tie, 0 if y is: every win-rate here counts ties half."""
    return 1.0 if x > y else 0.5 if x == y else 0.0


def per_prompt_wins(a: list[list[float]], b: list[list[float]]) -> list[float]:
    """For each prompt, the mean over paired samples of 1 (a better), 0.5 (tie), 0 (b better)."""
    out = []
    for xs, ys in zip(a, b):
        pairs = list(zip(xs, ys))
        out.append(sum(win(x, y) for x, y in pairs) / len(pairs))
    return out


def winrate_matrix(scores: dict[str, list[list[float]]], seed: int = 0) -> dict:
    names = list(scores)
    mat, lo, hi = [], [], []
    for a in names:
        row, row_lo, row_hi = [], [], []
        for b in names:
            wins = per_prompt_wins(scores[a], scores[b])
            row.append(statistics.fmean(wins))
            ci = bootstrap_ci(wins, seed=seed)
            row_lo.append(ci[0])
            row_hi.append(ci[1])
        mat.append(row)
        lo.append(row_lo)
        hi.append(row_hi)
    return {"names": names, "winrate": mat, "ci_low": lo, "ci_high": hi}


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct-n: unique n-grams / all n-grams over the whole set of responses (Li et al., 2016)."""
    grams, total = set(), 0
    for t in texts:
        words = t.split()
        for i in range(len(words) - n + 1):
            grams.add(tuple(words[i : i + n]))
            total += 1
    return len(grams) / total if total else 0.0
