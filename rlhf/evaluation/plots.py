"""The report's plots as PNG bytes (matplotlib, Agg): PPO training curves, win-rates, the sampling sweep, reward
over-optimisation."""

from __future__ import annotations

import io
from pathlib import Path

from rlhf.logs import read_log


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plot_ppo_curves(log_path: Path) -> bytes | None:
    import matplotlib.pyplot as plt

    rows = [r for r in read_log(log_path) if "objective/scores" in r]
    if not rows:
        return None
    x = [r.get("episode", i) for i, r in enumerate(rows)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key in zip(axes, ("objective/scores", "objective/kl", "objective/rlhf_reward")):
        ax.plot(x, [r[key] for r in rows], lw=1.5)
        ax.set_title(key)
        ax.set_xlabel("episode")
        ax.grid(alpha=0.3)
    fig.suptitle("PPO training curves", y=1.04)
    return _png(fig)


def plot_winrates(metrics: dict, pairs: list[tuple[str, str]]) -> bytes | None:
    import matplotlib.pyplot as plt

    bars = []
    for a, b in pairs:
        for judge_name in ("gold", "rm"):
            for suffix, label in (("", "greedy"), ("_sampled", "sampled")):
                key = f"{a}.{judge_name}_winrate_vs_{b}{suffix}"
                if key in metrics:
                    bars.append(
                        (
                            f"{a} vs {b}\n{judge_name}, {label}",
                            metrics[key],
                            metrics[key + "_ci_low"],
                            metrics[key + "_ci_high"],
                        )
                    )
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(bars)), 3.4))
    xs = range(len(bars))
    vals = [b[1] for b in bars]
    err = [[v - b[2] for v, b in zip(vals, bars)], [b[3] - v for v, b in zip(vals, bars)]]
    ax.bar(xs, vals, yerr=err, capsize=4, color="#4C72B0")
    ax.axhline(0.5, color="gray", ls="--", lw=1)
    ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win-rate (ties = 0.5), 95% CI")
    ax.set_title("Win-rates")
    return _png(fig)


def plot_sweep(sweep: list[dict]) -> bytes | None:
    import matplotlib.pyplot as plt

    if not sweep:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ykey = "gold_accuracy" if "gold_accuracy" in sweep[0] else "rm_score_mean"
    for name in dict.fromkeys(s["name"] for s in sweep):
        pts = [s for s in sweep if s["name"] == name]
        ax.plot([p["distinct_2"] for p in pts], [p[ykey] for p in pts], "o-", label=name)
        for p in pts:
            ax.annotate(f"T={p['temperature']},p={p['top_p']}", (p["distinct_2"], p[ykey]), fontsize=7)
    ax.set_xlabel("distinct-2 (diversity)")
    ax.set_ylabel(ykey.replace("_", " "))
    ax.set_title("Sampling sweep: accuracy vs diversity")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_overoptimisation(points: list[dict]) -> bytes | None:
    import matplotlib.pyplot as plt

    if len(points) < 2 or "gold_score" not in points[0]:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["rm_score"] for p in points], [p["gold_score"] for p in points], "o-")
    for p in points:
        ax.annotate(p["label"], (p["rm_score"], p["gold_score"]), fontsize=7)
    ax.set_xlabel("reward-model score (proxy)")
    ax.set_ylabel("gold score (true objective)")
    ax.set_title("Reward over-optimisation across PPO checkpoints")
    ax.grid(alpha=0.3)
    return _png(fig)
