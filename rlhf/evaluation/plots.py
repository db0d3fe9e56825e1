"""The report's plots as PNG bytes (matplotlib, Agg): training curves, win-rates against the baseline, the sampling
sweep, reward over-optimisation (gold score by checkpoint without a reward model). Each `*_figure` builds the
figure (tests measure its labels); `plot_*` renders it.

Point labels are placed by `place_labels`: each tries offsets around its point, nearest first, until its box meets
no other label, the legend or the axes' edge, so labels of close points never stack on one another."""

from __future__ import annotations

import io
import math
from pathlib import Path

from rlhf.logs import read_log

# What each trained stage's log.jsonl holds worth plotting, three panels at most (first found wins per panel).
CURVE_KEYS = {
    "ppo": ("objective/scores", "objective/kl", "objective/rlhf_reward"),
    "rloo": ("reward", "kl", "completions/mean_length"),
    "grpo": ("reward", "kl", "completions/mean_length"),
    "dpo": ("rewards/margins", "rewards/accuracies", "loss"),
}
FALLBACK_KEYS = ("objective/scores", "reward", "rewards/margins", "objective/kl", "kl", "loss")


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(figsize):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def place_labels(ax, items: list[tuple[float, float, str]], fontsize: float = 7, obstacles=()) -> list:
    """Annotate each (x, y, text) near its point where its text box overlaps no label placed before it and none of
    the `obstacles` (artists such as the legend), inside the axes; a label away from its point gets a thin line back
    to it. Offsets are tried on rings of 8 directions at growing distances, nearest first; the axes' margins are
    widened first so points at the edge have room; points at the same spot share one label. Should no spot be
    free, the one overlapping fewest labels is taken. Returns the annotations."""
    from matplotlib.text import Text

    if not items:
        return []
    merged: dict[
        tuple[float, float], list[str]
    ] = {}  # points drawn at one spot get one label: "T=0.3, T=0.7"
    for x, y, text in items:
        texts = merged.setdefault((x, y), [])
        if text not in texts:
            texts.append(text)
    items = [(x, y, ", ".join(texts)) for (x, y), texts in merged.items()]
    ax.margins(0.18)
    fig = ax.figure
    fig.canvas.draw()  # final limits and layout, so the boxes measured below are the ones drawn
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [o.get_window_extent(renderer) for o in obstacles]
    line = {"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 1, "shrinkB": 3}
    placed = []
    for x, y, text in items:
        best = None  # (overlaps, ann, box)
        for radius in (7, 14, 22, 32, 44, 58, 74, 92, 112, 135):
            for k in range(8):
                angle = math.pi / 4 + k * math.pi / 4  # up-right first, then counter-clockwise
                dx, dy = radius * math.cos(angle), radius * math.sin(angle)
                ann = ax.annotate(
                    text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                    ha="left" if dx > 1 else "right" if dx < -1 else "center",
                    va="bottom" if dy > 1 else "top" if dy < -1 else "center",
                    arrowprops=line if radius > 7 else None,
                )  # fmt: skip
                ann.get_window_extent(renderer)  # positions the text for the offset
                box = Text.get_window_extent(ann, renderer).padded(2)  # the text alone, not its line
                outside = box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1
                clashes = sum(box.overlaps(t) for t in taken) + 1000 * outside
                if best is None or clashes < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (clashes, ann, box)
                else:
                    ann.remove()
                if clashes == 0:
                    break
            if best[0] == 0:
                break
        taken.append(best[2])
        placed.append(best[1])
    return placed


def training_curves_figure(log_path: Path, kind: str):
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    keys = [k for k in CURVE_KEYS.get(kind, FALLBACK_KEYS) if any(k in r for r in rows)][:3]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r.get("episode", r.get("step", i)), r[key]) for i, r in enumerate(rows) if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.5)
        ax.set_title(key)
        ax.set_xlabel("episode" if "episode" in rows[0] else "step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{kind.upper()} training curves")
    fig.tight_layout()
    return fig


def plot_training_curves(log_path: Path, kind: str = "ppo") -> bytes | None:
    fig = training_curves_figure(log_path, kind)
    return _png(fig) if fig is not None else None


WINRATE_BARS = (
    ("gold", "", "gold judge, greedy", "#4C72B0"),
    ("gold", "_sampled", "gold judge, sampled", "#8FAADC"),
    ("rm", "", "reward model, greedy", "#DD8452"),
    ("rm", "_sampled", "reward model, sampled", "#F2B48A"),
)


def winrates_figure(metrics: dict, names: list[str], baseline: str):
    """Each method's win-rate against the baseline: one group of horizontal bars per method (gold judge and reward
    model, greedy and sampled), 95% CIs as error bars."""
    from rlhf.evaluation.table import display_name

    methods = [n for n in names if n != baseline]
    bars = [
        b for b in WINRATE_BARS if any(f"{n}.{b[0]}_winrate_vs_{baseline}{b[1]}" in metrics for n in methods)
    ]
    if not methods or not bars:
        return None
    fig, ax = _figure((7.5, 1.0 + 0.3 * len(bars) * len(methods) + 0.35 * len(methods)))
    height = 0.8 / len(bars)
    for k, (judge, suffix, label, color) in enumerate(bars):
        ys, vals, lo, hi = [], [], [], []
        for i, n in enumerate(methods):
            key = f"{n}.{judge}_winrate_vs_{baseline}{suffix}"
            if key in metrics:
                ys.append(i + (k - (len(bars) - 1) / 2) * height)
                vals.append(metrics[key])
                lo.append(metrics[key] - metrics[key + "_ci_low"])
                hi.append(metrics[key + "_ci_high"] - metrics[key])
        ax.barh(ys, vals, height=height * 0.9, xerr=[lo, hi], capsize=2, color=color, label=label)
    ax.axvline(0.5, color="gray", ls="--", lw=1)
    ax.set_yticks(range(len(methods)), [display_name(n) for n in methods])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"win-rate vs {display_name(baseline)} (ties = 0.5), 95% CI")
    ax.set_title(f"Win-rates against {display_name(baseline)}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_winrates(metrics: dict, names: list[str], baseline: str) -> bytes | None:
    fig = winrates_figure(metrics, names, baseline)
    return _png(fig) if fig is not None else None


def sweep_figure(sweep: list[dict]):
    """Accuracy (or reward) against diversity per checkpoint: one line per top-p (its marker), each point labelled
    with its temperature."""
    from rlhf.evaluation.table import display_name

    if not sweep:
        return None
    fig, ax = _figure((7.5, 4.5))
    ykey = "gold_accuracy" if "gold_accuracy" in sweep[0] else "rm_score_mean"
    markers = "os^Dv<>p"
    top_ps = list(dict.fromkeys(s["top_p"] for s in sweep))
    colors = {}
    items = []
    for name in dict.fromkeys(s["name"] for s in sweep):
        for j, tp in enumerate(top_ps):
            pts = [s for s in sweep if s["name"] == name and s["top_p"] == tp]
            if not pts:
                continue
            (line,) = ax.plot(
                [p["distinct_2"] for p in pts], [p[ykey] for p in pts], marker=markers[j % len(markers)],
                ls="-" if j == 0 else "--", color=colors.get(name), label=f"{display_name(name)}, top-p {tp}",
            )  # fmt: skip
            colors[name] = line.get_color()
            items += [(p["distinct_2"], p[ykey], f"T={p['temperature']:g}") for p in pts]
    ax.set_xlabel("distinct-2 (diversity)")
    ax.set_ylabel(ykey.replace("_", " "))
    ax.set_title("Sampling sweep: accuracy vs diversity" if ykey == "gold_accuracy" else "Sampling sweep")
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    place_labels(ax, items, obstacles=[legend])
    return fig


def plot_sweep(sweep: list[dict]) -> bytes | None:
    fig = sweep_figure(sweep)
    return _png(fig) if fig is not None else None


def overoptimisation_figure(points: list[dict], kind: str = "ppo"):
    if len(points) < 2 or "gold_score" not in points[0]:
        return None
    fig, ax = _figure((6.5, 4.2))
    ax.plot([p["rm_score"] for p in points], [p["gold_score"] for p in points], "o-")
    ax.set_xlabel("reward-model score (proxy)")
    ax.set_ylabel("gold score (true objective)")
    ax.set_title(f"Reward over-optimisation across {kind.upper()} checkpoints")
    ax.grid(alpha=0.3)
    place_labels(ax, [(p["rm_score"], p["gold_score"], p["label"]) for p in points])
    return fig


def plot_overoptimisation(points: list[dict], kind: str = "ppo") -> bytes | None:
    fig = overoptimisation_figure(points, kind)
    return _png(fig) if fig is not None else None


def gold_by_checkpoint_figure(points: list[dict], kind: str = "ppo"):
    """Gold score per saved checkpoint, in training order (a run compared without a reward model)."""
    if len(points) < 2 or "gold_score" not in points[0]:
        return None
    fig, ax = _figure((6.5, 4.2))
    ax.plot(range(len(points)), [p["gold_score"] for p in points], "o-")
    ax.set_xticks(range(len(points)), [p["label"] for p in points], rotation=30, ha="right")
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("gold score (true objective)")
    ax.set_title(f"Gold score across {kind.upper()} checkpoints")
    ax.grid(alpha=0.3)
    return fig


def plot_gold_by_checkpoint(points: list[dict], kind: str = "ppo") -> bytes | None:
    fig = gold_by_checkpoint_figure(points, kind)
    return _png(fig) if fig is not None else None
