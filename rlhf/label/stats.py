"""Numbers about a labels database: progress and counts per annotator, agreement on overlapping items (percent,
Cohen's kappa, and Krippendorff's alpha, which takes any number of annotators), agreement with gold
(quality-control) items, position bias, labels per minute, and the human win-rate of source A vs B in a blind
comparison.

Agreement is measured on verdicts per pair of responses: a pair label gives one verdict (response 0, response 1
or tie), a ranking of K responses one verdict for each of its K*(K-1)/2 pairs. Gold items count only towards
gold agreement. Only live labels count (an undone label is history). Intervals are 95% Wilson score intervals; for the win-rate
a tie counts half a win, and the Wilson interval is taken on that fractional win count (ties lower the variance,
so the interval is slightly conservative).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

from rlhf.label.store import Store

Z95 = 1.959963984540054
IDLE_CAP_S = 300.0  # a gap longer than this between two labels is a break, counted as this long
CI_METHOD = "95% Wilson score interval; ties count half a win"


def wilson(successes: float, n: int | float, z: float = Z95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for a proportion successes / n (successes may be fractional)."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(pairs: list[tuple[Any, Any]]) -> float | None:
    """Cohen's kappa for (rater 1, rater 2) category pairs; None when chance agreement is 1 (undefined)."""
    n = len(pairs)
    if n == 0:
        return None
    po = sum(a == b for a, b in pairs) / n
    c1, c2 = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    pe = sum(c1[k] * c2[k] for k in set(c1) | set(c2)) / (n * n)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def krippendorff_alpha(units: list[list[Any]]) -> float | None:
    """Krippendorff's alpha for nominal data: `units` holds, per unit, the values the raters gave (missing ones
    left out). Units with fewer than two values are not pairable and do not count. None when undefined (fewer
    than two pairable values, or a single category everywhere)."""
    coincidences: Counter = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c in counts:
            for k in counts:
                coincidences[(c, k)] += counts[c] * (counts[k] - (c == k)) / (m - 1)
    totals: Counter = Counter()
    for (c, _), v in coincidences.items():
        totals[c] += v
    n = sum(totals.values())
    if n <= 1:
        return None
    observed = sum(v for (c, k), v in coincidences.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k) / (n - 1)
    if expected == 0:
        return None
    return 1 - observed / expected


def verdicts(label: dict, n: int) -> dict[tuple[int, int], str]:
    """Position-free verdicts of one live label, per pair of responses (i < j, file order): 'r<i>' or 'r<j>'
    (which won), or 'tie'. A skip gives none."""
    if label["choice"] == "skip":
        return {}
    if label["choice"] == "tie":
        return {(0, 1): "tie"}
    rank = {r: p for p, r in enumerate(label["ranking"])}
    return {(i, j): f"r{i if rank[i] < rank[j] else j}" for i in range(n) for j in range(i + 1, n)}


def _rate(times: list[float]) -> tuple[float | None, float]:
    """Labels per minute over active time (gaps capped at IDLE_CAP_S); also returns the active minutes."""
    times = sorted(times)
    active = sum(min(b - a, IDLE_CAP_S) for a, b in zip(times, times[1:]))
    if len(times) < 2 or active <= 0:
        return None, active / 60
    return (len(times) - 1) / (active / 60), active / 60


def _agreement(items: dict[str, dict], labels: list[dict]) -> dict[str, Any]:
    by_item: dict[str, list[dict]] = defaultdict(list)
    for lab in labels:
        if items[lab["item_id"]]["gold"] is None:
            by_item[lab["item_id"]].append(lab)
    pairs_by_annotators: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    units: list[list[str]] = []
    overlapping = 0
    with_skip = 0
    for item_id, labs in by_item.items():
        if len({lab["annotator"] for lab in labs}) < 2:
            continue
        overlapping += 1
        n = len(items[item_id]["responses"])
        labs = sorted(labs, key=lambda lab: lab["annotator"])
        per = [verdicts(lab, n) for lab in labs]
        for key in {k for v in per for k in v}:
            units.append([v[key] for v in per if key in v])
        for (x, vx), (y, vy) in combinations(zip(labs, per), 2):
            if x["choice"] == "skip" or y["choice"] == "skip":
                with_skip += 1
                continue
            for key in vx.keys() & vy.keys():
                pairs_by_annotators[(x["annotator"], y["annotator"])].append((vx[key], vy[key]))
    pooled = [p for ps in pairs_by_annotators.values() for p in ps]
    per_pair = [
        {
            "annotators": list(k),
            "n": len(ps),
            "percent_agreement": 100 * sum(a == b for a, b in ps) / len(ps),
            "cohen_kappa": cohen_kappa(ps),
        }
        for k, ps in sorted(pairs_by_annotators.items())
    ]
    return {
        "overlapping_items": overlapping,
        "compared_pairs": len(pooled),
        "pairs_with_skip_left_out": with_skip,
        "percent_agreement": 100 * sum(a == b for a, b in pooled) / len(pooled) if pooled else None,
        # With two annotators this is plain Cohen's kappa; with more, it pools every annotator pair
        # (first rater = the alphabetically earlier name). Per-pair values are in `by_pair`.
        "cohen_kappa": cohen_kappa(pooled),
        # Any number of annotators, missing labels allowed; one unit per (item, pair of responses).
        "krippendorff_alpha": krippendorff_alpha(units),
        "alpha_units": sum(1 for u in units if len(u) >= 2),
        "by_pair": per_pair,
    }


def _gold(items: dict[str, dict], labels: list[dict], name: str) -> dict[str, Any]:
    """Agreement of one annotator with the gold answers: the share of gold verdicts (per pair of responses)
    they matched; skips left out, a tie on a gold pair counts as a miss."""
    hits = total = n_items = 0
    for lab in labels:
        it = items[lab["item_id"]]
        if lab["annotator"] != name or it["gold"] is None or lab["choice"] == "skip":
            continue
        n_items += 1
        n = len(it["responses"])
        want = verdicts({"choice": "rank", "ranking": it["gold"]}, n)
        got = verdicts(lab, n)
        for key, v in want.items():
            total += 1
            hits += got.get(key) == v
    return {"items": n_items, "verdicts": total, "agreement": hits / total if total else None}


def _position_bias(labels: list[dict]) -> dict[str, Any]:
    decided = [lab for lab in labels if lab["choice"] in ("A", "B")]  # pairs only: A = shown first
    left = sum(lab["choice"] == "A" for lab in decided)
    lo, hi = wilson(left, len(decided))
    return {
        "decisions": len(decided),
        "left_wins": left,
        "left_win_rate": left / len(decided) if decided else None,
        "ci95": [lo, hi],
    }


def _winrate(items: dict[str, dict], labels: list[dict], main: tuple[str, str] | None) -> dict[str, Any]:
    tallies: dict[tuple[str, str], Counter] = defaultdict(Counter)
    order: list[tuple[str, str]] = []
    for lab in labels:
        it = items[lab["item_id"]]
        src = it["sources"]
        if src is None or it["gold"] is not None:
            continue
        n = len(src)
        votes = (
            verdicts(lab, n) if lab["choice"] != "skip" else dict.fromkeys(combinations(range(n), 2), "skip")
        )
        for (i, j), v in votes.items():
            key = tuple(sorted((src[i], src[j])))
            if main and set(key) == set(main):
                key = main
            if key not in tallies:
                order.append(key)
            t = tallies[key]
            if v in ("skip", "tie"):
                t[v + "s"] += 1
            else:
                winner = src[int(v[1:])]
                t["wins_a" if winner == key[0] else "wins_b"] += 1
    by_pair = []
    for key in order:
        t = tallies[key]
        n = t["wins_a"] + t["wins_b"] + t["ties"]
        score = t["wins_a"] + 0.5 * t["ties"]
        lo, hi = wilson(score, n)
        by_pair.append(
            {
                "source_a": key[0],
                "source_b": key[1],
                "wins_a": t["wins_a"],
                "wins_b": t["wins_b"],
                "ties": t["ties"],
                "skips": t["skips"],
                "n": n,
                "winrate_a": score / n if n else None,
                "ci95": [lo, hi],
            }
        )
    if not by_pair:
        return {
            "available": False,
            "reason": "no labeled item names its sources (not a blind comparison)",
            "n": 0,
            "winrate_a": None,
            "ci95": [None, None],
            "ci_method": CI_METHOD,
            "by_pair": [],
        }
    head = next((p for p in by_pair if main and (p["source_a"], p["source_b"]) == main), by_pair[0])
    return {"available": True, **head, "ci_method": CI_METHOD, "by_pair": by_pair}


def _load(db_path: str | Path) -> tuple[dict[str, dict], list[dict], dict, Counter, list[str]]:
    """Items by id, every label (live and undone), meta, queue lengths and annotators, read in one go."""
    store = Store(db_path)
    try:
        items = {it["id"]: it for it in store.items()}
        labels = store.labels(live_only=False)
        meta = store.meta()
        assigned = Counter(a["annotator"] for a in store.assignments())
        annotators = store.annotators()
    finally:
        store.close()
    return items, labels, meta, assigned, annotators


def _main_pair(meta: dict, items: dict[str, dict]) -> tuple[str, str] | None:
    if meta.get("compare_sources"):
        return tuple(meta["compare_sources"])
    for it in sorted(items.values(), key=lambda it: it["idx"]):
        if it["sources"] is not None:
            return it["sources"][0], it["sources"][1]
    return None


def human_winrate(db_path: str | Path) -> dict[str, Any]:
    """Human win-rate of source A over source B from a labels database (for `rlhf compare`'s report).

    Source A/B are the compared checkpoints (`--compare A B`) or the first item's `sources` order. Returns
    `available`, `source_a`, `source_b`, `wins_a`, `wins_b`, `ties`, `skips`, `n` (labels other than skips),
    `winrate_a` ((wins_a + ties/2) / n), `ci95` [low, high], `ci_method`, and `by_pair` when items compare more
    than one pair of sources. Every live label counts (an item labeled by two annotators counts twice).
    Raises UserError for a missing or foreign database file."""
    items, labels, meta, _, _ = _load(db_path)
    live = [lab for lab in labels if lab["undone_at"] is None]
    return _winrate(items, live, _main_pair(meta, items))


def compute_stats(db_path: str | Path) -> dict[str, Any]:
    items, all_labels, meta, assigned, annotators = _load(db_path)
    live = [lab for lab in all_labels if lab["undone_at"] is None]
    per: dict[str, dict[str, Any]] = {}
    for name in annotators:
        mine = [lab for lab in live if lab["annotator"] == name]
        choices = Counter(lab["choice"] for lab in mine)
        rate, active_min = _rate([lab["created_at"] for lab in mine])
        queue = assigned.get(name, 0)
        per[name] = {
            "assigned": queue,
            "labels": len(mine),
            "remaining": queue - len(mine),
            "progress": len(mine) / queue if queue else None,
            "rankings": choices["rank"],
            "left_wins": choices["A"],
            "right_wins": choices["B"],
            "ties": choices["tie"],
            "skips": choices["skip"],
            "undone": sum(
                1 for lab in all_labels if lab["annotator"] == name and lab["undone_at"] is not None
            ),
            "labels_per_minute": rate,
            "active_minutes": active_min,
            "gold": _gold(items, live, name),
        }
    total_active = sum(p["active_minutes"] for p in per.values())
    gaps = sum(max(p["labels"] - 1, 0) for p in per.values())
    choices = Counter(lab["choice"] for lab in live)
    return {
        "db": str(db_path),
        "items": sum(1 for it in items.values() if it["gold"] is None),
        "gold_items": sum(1 for it in items.values() if it["gold"] is not None),
        "gold_rate": meta.get("gold_rate") or 0.0,
        "annotators": annotators,
        "overlap": meta["overlap"],
        "labels": len(live),
        "undone": len(all_labels) - len(live),
        "labeled_items": len({lab["item_id"] for lab in live}),
        "choices": {k: choices[k] for k in ("A", "B", "tie", "skip", "rank")},
        "per_annotator": per,
        "labels_per_minute": gaps / total_active if total_active > 0 else None,
        "rate_method": f"labels per minute of active time; gaps over {IDLE_CAP_S:.0f} s count as {IDLE_CAP_S:.0f} s",
        "agreement": _agreement(items, live),
        "position_bias": _position_bias(live),
        "human_winrate": _winrate(items, live, _main_pair(meta, items)),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def format_stats(s: dict[str, Any]) -> str:
    lines = [
        f"labels: {s['labels']} live ({s['undone']} undone) on {s['labeled_items']} of {s['items']} items "
        f"by {len(s['annotators'])} annotator(s); overlap share {s['overlap']:g}"
        + (f"; {s['gold_items']} gold items, {s['gold_rate']:g} of each queue" if s["gold_items"] else ""),
        "",
    ]
    width = max(9, *(len(a) for a in s["annotators"]))
    head = (
        f"{'annotator'.ljust(width)}  {'done':>11} {'left':>5} {'right':>5} {'tie':>5} {'rank':>5} "
        f"{'skip':>5} {'undone':>6} {'per min':>7} {'gold':>12}"
    )
    lines.append(head)
    for name, p in s["per_annotator"].items():
        done = f"{p['labels']}/{p['assigned']}"
        g = p["gold"]
        gold = "-" if g["agreement"] is None else f"{_pct(g['agreement'])} of {g['verdicts']}"
        lines.append(
            f"{name.ljust(width)}  {done:>11} {p['left_wins']:>5} {p['right_wins']:>5} {p['ties']:>5} "
            f"{p['rankings']:>5} {p['skips']:>5} {p['undone']:>6} {_num(p['labels_per_minute'], '.1f'):>7} "
            f"{gold:>12}"
        )
    lines.append(
        f"labels per minute (all annotators): {_num(s['labels_per_minute'], '.1f')}  ({s['rate_method']})"
    )
    ag = s["agreement"]
    lines.append("")
    if ag["compared_pairs"]:
        lines.append(
            f"agreement on {ag['overlapping_items']} overlapping item(s), {ag['compared_pairs']} annotator pair(s) "
            f"compared ({ag['pairs_with_skip_left_out']} with a skip left out): "
            f"{ag['percent_agreement']:.1f}% agree, Cohen's kappa {_num(ag['cohen_kappa'])}, "
            f"Krippendorff's alpha {_num(ag['krippendorff_alpha'])} ({ag['alpha_units']} units)"
        )
        for p in ag["by_pair"]:
            lines.append(
                f"  {p['annotators'][0]} vs {p['annotators'][1]}: n={p['n']}, {p['percent_agreement']:.1f}% agree, "
                f"kappa {_num(p['cohen_kappa'])}"
            )
    else:
        lines.append(
            f"agreement: no overlapping item labeled by two annotators yet "
            f"({ag['overlapping_items']} overlapping item(s) labeled)"
        )
    pb = s["position_bias"]
    lo, hi = pb["ci95"]
    lines.append(
        f"position bias: the left (A) slot won {_pct(pb['left_win_rate'])} of {pb['decisions']} A/B decisions "
        f"(95% Wilson CI {_pct(lo)} to {_pct(hi)}; 50% = no bias)"
    )
    w = s["human_winrate"]
    if w["available"]:
        lo, hi = w["ci95"]
        lines.append(
            f"human win-rate of {w['source_a']} vs {w['source_b']}: {_pct(w['winrate_a'])} "
            f"(95% CI {_pct(lo)} to {_pct(hi)}; {w['wins_a']} wins, {w['wins_b']} losses, {w['ties']} ties, "
            f"{w['skips']} skips; {w['ci_method']})"
        )
        for p in w["by_pair"][1:]:
            lines.append(f"  also {p['source_a']} vs {p['source_b']}: {_pct(p['winrate_a'])} over n={p['n']}")
    return "\n".join(lines)
