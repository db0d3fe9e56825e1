"""The report's plots keep their labels apart: the sampling sweep's and the over-optimisation plot's point labels
(which used to stack on one another when points were close), and the win-rate plot's method names, measured as
drawn (each text's box from the renderer's get_window_extent)."""

from __future__ import annotations

import itertools
import random

import pytest
from matplotlib.text import Text

from rlhf.evaluation.plots import (
    overoptimisation_figure,
    plot_overoptimisation,
    plot_sweep,
    plot_winrates,
    sweep_figure,
    winrates_figure,
)

PNG = b"\x89PNG\r\n\x1a\n"


def boxes(fig, texts):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, renderer) for t in texts]


def overlapping(bs) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(bs), 2) if a.overlaps(b)]


def dense_sweep(checkpoints=("sft", "ppo", "dpo", "bon4"), seed=0) -> list[dict]:
    """Each checkpoint's points within 0.01 of one another (at T=0.3 both top-p give the same answers, so the same
    point), the checkpoints far apart, as a small eval set gives: labels at their points stack."""
    rng = random.Random(seed)
    out = []
    for k, n in enumerate(checkpoints):
        cx, cy = 0.2 + 0.6 * k / max(1, len(checkpoints) - 1), 0.3 + 0.5 * (k % 2)
        for t in (0.3, 0.7, 1.0):
            dx, dy = rng.uniform(-0.005, 0.005), rng.uniform(-0.005, 0.005)
            for p in (0.9, 1.0):
                jitter = 0.0 if t == 0.3 else rng.uniform(-0.003, 0.003)
                out.append({"name": n, "temperature": t, "top_p": p, "distinct_2": cx + dx + jitter,
                            "gold_accuracy": cy + dy + jitter})  # fmt: skip
    return out


def naive_overlaps(points: list[tuple[float, float, str]]) -> int:
    """How many label pairs overlap when each label sits at its point (the old plots' placement)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o")
    texts = [ax.annotate(t, (x, y), fontsize=7) for x, y, t in points]
    n = len(overlapping(boxes(fig, texts)))
    plt.close(fig)
    return n


def one_label_per_spot(points: list[tuple[float, float, str]]) -> list[str]:
    spots: dict[tuple[float, float], list[str]] = {}
    for x, y, text in points:
        if text not in spots.setdefault((x, y), []):
            spots[(x, y)].append(text)
    return [", ".join(texts) for texts in spots.values()]


def assert_labels_apart(fig, points: list[tuple[float, float, str]]):
    ax = fig.axes[0]
    labels = list(ax.texts)
    # every point labelled, once; points at one spot share a label
    assert sorted(t.get_text() for t in labels) == sorted(one_label_per_spot(points))
    label_boxes = boxes(fig, labels)
    assert overlapping(label_boxes) == []
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    others = [ax.title, ax.xaxis.label, ax.yaxis.label] + ([ax.get_legend()] if ax.get_legend() else [])
    renderer = fig.canvas.get_renderer()
    for box in label_boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        for other in others:
            assert not box.overlaps(other.get_window_extent(renderer)), other


@pytest.mark.parametrize("checkpoints", [("sft", "ppo"), ("sft", "ppo", "dpo", "rloo", "bon4")])
def test_sweep_labels_do_not_overlap(checkpoints):
    import matplotlib.pyplot as plt

    sweep = dense_sweep(checkpoints)
    points = [(s["distinct_2"], s["gold_accuracy"], f"T={s['temperature']:g}") for s in sweep]
    assert naive_overlaps(points) > 0  # the data is close enough to stack labels placed at their points
    fig = sweep_figure(sweep)
    try:
        assert_labels_apart(fig, points)
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "SFT, top-p 0.9" in legend and "PPO, top-p 1.0" in legend
    finally:
        plt.close(fig)
    assert plot_sweep(sweep).startswith(PNG)


def test_overoptimisation_labels_do_not_overlap():
    import matplotlib.pyplot as plt

    labels = ["sft", "checkpoint-2", "checkpoint-4", "checkpoint-6", "checkpoint-8", "final"]
    # SFT far off; PPO's checkpoints converged (within 0.01 of one another), the last two equal
    xy = [(0.2, 0.3), (1.5, 0.7), (1.505, 0.71), (1.51, 0.705), (1.508, 0.7), (1.508, 0.7)]
    points = [{"label": lab, "rm_score": x, "gold_score": y} for lab, (x, y) in zip(labels, xy)]
    assert naive_overlaps([(p["rm_score"], p["gold_score"], p["label"]) for p in points]) > 0
    fig = overoptimisation_figure(points, "ppo")
    try:
        assert_labels_apart(fig, [(p["rm_score"], p["gold_score"], p["label"]) for p in points])
        assert "checkpoint-8, final" in [t.get_text() for t in fig.axes[0].texts]  # the two at one spot
    finally:
        plt.close(fig)
    assert plot_overoptimisation(points).startswith(PNG)


def test_winrate_plot_names_each_method_once_without_overlap():
    import matplotlib.pyplot as plt

    names = ["sft", "ppo", "dpo", "rloo", "bon4", "bon16"]
    metrics = {}
    for n in names[1:]:
        for key in ("gold_winrate_vs_sft", "gold_winrate_vs_sft_sampled", "rm_winrate_vs_sft",
                    "rm_winrate_vs_sft_sampled"):  # fmt: skip
            metrics[f"{n}.{key}"], metrics[f"{n}.{key}_ci_low"], metrics[f"{n}.{key}_ci_high"] = 0.6, 0.5, 0.7
    fig = winrates_figure(metrics, names, "sft")
    try:
        ax = fig.axes[0]
        ticks = [t for t in ax.get_yticklabels() if t.get_text()]
        assert [t.get_text() for t in ticks] == ["PPO", "DPO", "RLOO", "Best-of-4", "Best-of-16"]
        assert overlapping(boxes(fig, ticks)) == []
        assert len(ax.patches) == 5 * 4  # a bar per method, judge and decoding
    finally:
        plt.close(fig)
    assert plot_winrates(metrics, names, "sft").startswith(PNG)
    assert winrates_figure(metrics, ["sft"], "sft") is None
