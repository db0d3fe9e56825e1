"""What the report leads with: one row per method against the baseline (the SFT policy), a plain-words headline per
method, and the per-prompt outcomes the report's explorer filters on. Built from compare's metrics, so metrics.json
holds the same numbers the report shows."""

from __future__ import annotations

import re

from rlhf.evaluation import best_of_n

KNOWN = {"sft": "SFT", "ppo": "PPO", "dpo": "DPO", "rloo": "RLOO", "grpo": "GRPO"}
OUTCOMES = {"win": "wins", "tie": "ties", "loss": "losses"}  # outcome: its count's field in a table row


def display_name(name: str) -> str:
    """How a sentence names a method: PPO for ppo, Best-of-16 for bon16, names it does not know as they are."""
    if m := re.fullmatch(r"bon(\d+)", name):
        return f"Best-of-{m[1]}"
    if m := re.fullmatch(r"(.+)-bon(\d+)", name):
        return f"Best-of-{m[2]} over {display_name(m[1])}"
    return KNOWN.get(name, name)


def outcome(a: float, b: float) -> str:
    return "win" if a > b else "loss" if a < b else "tie"


def prompt_outcomes(greedy: dict[str, object], baseline: str, judge: str | None) -> dict[str, list[str]]:
    """Per method (not the baseline), per prompt: its greedy answer's win/tie/loss against the baseline's by `judge`
    ("gold" or "rm" scores of the compare runs in `greedy`); {} without a judge."""
    if judge is None or baseline not in greedy:
        return {}
    base = getattr(greedy[baseline], judge)
    return {
        name: [outcome(a[0], b[0]) for a, b in zip(getattr(run, judge), base)]
        for name, run in greedy.items()
        if name != baseline
    }


def _value(metrics: dict, key: str) -> tuple[float | None, list[float] | None]:
    v = metrics.get(key)
    if not isinstance(v, (int, float)):
        return None, None
    ci = [metrics.get(key + "_ci_low"), metrics.get(key + "_ci_high")]
    return float(v), ci if all(isinstance(c, (int, float)) for c in ci) else None


def comparison_rows(
    metrics: dict, names: list[str], baseline: str, outcomes: dict[str, list[str]], judge: str | None
) -> list[dict]:
    """metrics.json's `comparison`: the baseline's row first, then each method's against it. Win-rates count ties
    as 0.5, with 95% bootstrap CIs over prompts; `reward_hacking_gap` is the reward model's win-rate minus the gold
    judge's. Wall time and peak memory: what the method's stage recorded in its manifest (`cost_measured`
    "stage"), or, for Best-of-N, its sampling and scoring inside compare ("evaluation"); None where unknown."""
    rows = []
    for name in sorted(names, key=lambda n: n != baseline):
        spec = metrics.get("checkpoints", {}).get(name, "")
        bon = best_of_n.parse_spec(spec)[1]
        row: dict = {
            "method": name,
            "label": display_name(name),
            "baseline": name == baseline,
            "best_of": bon,
        }
        for field, judge_name, suffix in (
            ("gold_winrate", "gold", ""),
            ("gold_winrate_sampled", "gold", "_sampled"),
            ("rm_winrate", "rm", ""),
            ("rm_winrate_sampled", "rm", "_sampled"),
        ):
            v, ci = _value(metrics, f"{name}.{judge_name}_winrate_vs_{baseline}{suffix}")
            row[field], row[field + "_ci"] = v, ci
        for suffix in ("", "_sampled"):
            gold, rm = row[f"gold_winrate{suffix}"], row[f"rm_winrate{suffix}"]
            row[f"reward_hacking_gap{suffix}"] = rm - gold if gold is not None and rm is not None else None
        kl = next((k for k in metrics if k.startswith(f"{name}.kl_to_")), None)
        row["kl"] = metrics[kl] if kl else None
        row["kl_reference"] = kl.partition(".kl_to_")[2] if kl else None
        row["kl_is_bound"] = name in metrics.get("kl_bounds", {})
        for field, key in (
            ("response_length", "response_length"),
            ("response_length_sampled", "response_length_sampled"),
            ("wall_seconds", "stage_seconds"),
            ("peak_rss_mib", "stage_peak_rss_mib"),
            ("peak_gpu_mib", "stage_peak_gpu_mib"),
            ("generated_tokens_per_answer", "generated_tokens_per_answer"),
            ("generated_tokens", "generated_tokens"),
            ("candidates_rm_agreement", "candidates_rm_agreement"),
            ("candidates_shorter_agreement", "candidates_shorter_agreement"),
            ("candidates_oracle_accuracy", "candidates_oracle_accuracy"),
            ("on_topic", "on_topic"),
        ):
            row[field] = metrics.get(f"{name}.{key}")
        row["cost_measured"] = "evaluation" if bon else "stage" if row["wall_seconds"] is not None else None
        row["judge"] = judge if name in outcomes else None
        for o, field in OUTCOMES.items():
            row[field] = outcomes[name].count(o) if name in outcomes else None
        rows.append(row)
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def headline(row: dict, baseline: dict, num_prompts: int) -> str:
    """One sentence in plain words: who beats whom, how often, how sure, by which judge, and what the reward model
    says (its excess over the gold judge is reward hacking). Results only, no measurements of the machine (wall
    time, memory: in the table), so one seed gives the same sentences on every run."""
    me, base = row["label"], baseline["label"]
    judge = "gold" if row["gold_winrate"] is not None else "rm" if row["rm_winrate"] is not None else None
    if judge is None:
        return f"{me}: no judge to compare it with {base} (the prompts are no task's with a gold judge, and no --reward)."
    v, ci = row[f"{judge}_winrate"], row[f"{judge}_winrate_ci"]
    lo, hi = ci if ci else (v, v)
    by = "by the gold judge" if judge == "gold" else "by the reward model (these prompts have no gold judge)"
    counts = ""
    if row.get("judge") == judge:
        counts = "; " + ", ".join(
            f"{row[f]} {word if row[f] == 1 else f}"
            for word, f in (("win", "wins"), ("tie", "ties"), ("loss", "losses"))
        )
    where = f"{_pct(v)} of {num_prompts} prompts [{_pct(lo)}, {_pct(hi)}] {by} (greedy answers, ties count half{counts})"
    if lo > 0.5:
        text = f"{me} beats {base} on {where}."
    elif hi < 0.5:
        text = f"{me} loses to {base}: it beats it on only {where}."
    else:
        text = f"{me} is level with {base}: it beats it on {where}, no clear difference."
    if judge == "gold" and row["rm_winrate"] is not None:
        gap = row["reward_hacking_gap"]
        if gap >= 0.05:
            text += (
                f" The reward model prefers it on {_pct(row['rm_winrate'])}, {100 * gap:.0f} points more than the "
                "gold judge: reward hacking."
            )
        else:
            text += f" The reward model prefers it on {_pct(row['rm_winrate'])}."
    if row["best_of"]:
        text += f" Each answer costs {row['best_of']} samples ({row['generated_tokens_per_answer']:.0f} generated tokens)."
        if row.get("candidates_rm_agreement") is not None:
            text += (
                f" Among its candidates the reward model orders {_pct(row['candidates_rm_agreement'])} of the pairs the"
                f" gold judge separates as the judge does (picking the shorter answer: "
                f"{_pct(row['candidates_shorter_agreement'])}); a perfect pick would satisfy the judge on "
                f"{_pct(row['candidates_oracle_accuracy'])} of prompts."
            )
    return text


def headlines(rows: list[dict], num_prompts: int) -> list[str]:
    base = next((r for r in rows if r["baseline"]), None)
    return [headline(r, base, num_prompts) for r in rows if not r["baseline"]] if base else []


def format_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


# The comparison table as the report shows it: header cells, then one list of cells per row.
def optional_columns(rows: list[dict]) -> tuple[bool, bool]:
    """Whether the table has its peak GPU and its on-topic column: some row has a value for it."""
    return (
        any(r["peak_gpu_mib"] is not None for r in rows),
        any(r["on_topic"] is not None for r in rows),
    )


def table_header(rows: list[dict]) -> list[str]:
    base = next((r["label"] for r in rows if r["baseline"]), "baseline")
    header = [
        "method",
        f"gold win-rate vs {base}, greedy [95% CI]",
        "gold win-rate, sampled",
        "RM win-rate, greedy",
        "RM win-rate, sampled",
        "RM − gold (reward hacking)",
        f"KL to {base} (nats)",
        "mean length (words)",
    ]
    gpu, topic = optional_columns(rows)
    if topic:
        header.append("on topic, greedy")
    header += [
        "wall time",
        "peak RAM",
    ]
    if gpu:
        header.append("peak GPU")
    return header + ["tokens generated per answer"]


def table_cells(row: dict, with_gpu: bool, with_topic: bool = False) -> list[str]:
    def wr(field):
        v, ci = row[field], row[field + "_ci"]
        if v is None:
            return "—"
        return f"{_pct(v)} [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else _pct(v)

    def num(v, fmt):
        return "—" if v is None else fmt.format(v)

    mark = "*" if row["cost_measured"] == "evaluation" else ""
    gap = row["reward_hacking_gap"]
    cells = [
        row["label"] + (" (baseline)" if row["baseline"] else ""),
        wr("gold_winrate"),
        wr("gold_winrate_sampled"),
        wr("rm_winrate"),
        wr("rm_winrate_sampled"),
        "—" if gap is None else f"{100 * gap:+.0f} pts",
        "—" if row["kl"] is None else ("≤ " if row["kl_is_bound"] else "") + f"{row['kl']:.3f}",
        num(row["response_length"], "{:.1f}"),
    ]
    if with_topic:
        cells.append("—" if row["on_topic"] is None else _pct(row["on_topic"]))
    cells += [
        "—" if row["wall_seconds"] is None else format_seconds(row["wall_seconds"]) + mark,
        "—" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:,.0f} MiB{mark}",
    ]
    if with_gpu:
        cells.append("—" if row["peak_gpu_mib"] is None else f"{row['peak_gpu_mib']:,.0f} MiB{mark}")
    return cells + [num(row["generated_tokens_per_answer"], "{:.1f}")]


def table_body(rows: list[dict]) -> list[list[str]]:
    """Every row's cells, with the optional columns `table_header` names."""
    gpu, topic = optional_columns(rows)
    return [table_cells(r, gpu, topic) for r in rows]


TABLE_NOTES = (
    "Win-rates count ties as 0.5; brackets are 95% bootstrap CIs over prompts. RM − gold: how much more the reward "
    "model prefers the method than the gold judge does (greedy answers); a large positive gap is reward hacking. "
    "Wall time and peak RAM/GPU: the method's stage as its manifest records them (from the stage's start, model "
    "loading included). * Best-of-N trains nothing: its figures are its sampling and reward scoring inside compare "
    "(peak RAM of the compare process, every loaded model included), its KL the bound log N − (N−1)/N. Tokens "
    "generated per answer: at the sampling settings, all N samples for Best-of-N. On topic (where the task names "
    "what an answer should be about): the share of greedy answers sharing a content word with the instruction "
    "without its constraints, a lexical proxy for answers the gold judge cannot tell from off-topic ones."
)


def breakdown_table(metrics: dict, names: list[str]) -> tuple[str, list[str], list[list[str]]] | None:
    """The per-part table (e.g. per constraint type) from compare's `breakdown`: (title, header, rows), one row per
    part with its number of prompts and each checkpoint's rate, greedy then sampled; None when the task's judge
    has no parts."""
    info = metrics.get("breakdown")
    if not info:
        return None
    metric, label = info["metric"], info["label"]
    header = [label, "prompts"] + [
        f"{display_name(n)}, {mode}" for mode in ("greedy", "sampled") for n in names
    ]
    rows = []
    for part, count in info["prompts"].items():
        cells = [part, str(count)]
        for suffix in ("", "_sampled"):
            for n in names:
                v = metrics.get(f"{n}.{metric}{suffix}.{part}")
                cells.append("—" if v is None else _pct(v))
        rows.append(cells)
    title = f"Per {label}: share of answers satisfying it"
    return title, header, rows


def explorer_rows(
    prompts: list[str], greedy: dict[str, object], outcomes: dict[str, list[str]]
) -> list[dict]:
    """The explorer's rows: per prompt, every method's greedy answer with its scores, and each method's outcome
    against the baseline."""
    rows = []
    for i, prompt in enumerate(prompts):
        answers = {}
        for name, run in greedy.items():
            answers[name] = {
                "text": run.samples[i][0].text,
                "gold": run.gold[i][0] if run.gold is not None else None,
                "rm": run.rm[i][0] if run.rm is not None else None,
            }
        rows.append(
            {"prompt": prompt, "answers": answers, "outcomes": {n: o[i] for n, o in outcomes.items()}}
        )
    return rows
