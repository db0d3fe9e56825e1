"""`rlhf compare`: judge policy checkpoints side by side on the same prompts, samples and seeds.

Per checkpoint: reward-model score (mean, 95% bootstrap CI), gold-judge accuracy (demo tasks), response length,
distinct-1/2, ROUGE-L against reference outputs, KL to a reference checkpoint. Between checkpoints: win-rate
matrices by gold judge and by reward model with bootstrap CIs. Plus a temperature x top-p sweep, PPO training
curves and reward over-optimisation when a PPO dir is given. Writes metrics.json, report.md and a
self-contained report.html (plots inlined as PNG data URIs).
"""

from __future__ import annotations

import base64
import html
import io
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlhf import checkpoint
from rlhf.argparse_utils import ArgumentParser
from rlhf.data import load_instructions
from rlhf.errors import UserError, exit_on_user_error
from rlhf.generate import Completion, SamplingParams, generate, response_logprobs
from rlhf.generate_cli import is_plain_model_dir
from rlhf.io import atomic_write_files, atomic_write_jsonl, require_writable_dir
from rlhf.models import load_causal_lm, load_policy_from_stage, load_tokenizer
from rlhf.paths import refuse_overlap
from rlhf.tasks import judge, parse_task
from rlhf.templates import format_prompt
from rlhf.training import LOG_FILE

ROUGE_METRIC = Path(__file__).parent / "metrics" / "rouge_l.py"


@dataclass
class Policy:
    name: str
    path: Path
    kind: str
    model: object = field(repr=False)
    tokenizer: object = field(repr=False)
    template: str = "alpaca"


@dataclass
class Run:
    """One policy's responses to every prompt under one sampling setting, with their scores."""

    samples: list[list[Completion]]
    gold: list[list[float]] | None = None
    rm: list[list[float]] | None = None


# ----------------------------------------------------------------------------------------------- statistics


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


def per_prompt_wins(a: list[list[float]], b: list[list[float]]) -> list[float]:
    """For each prompt, the mean over paired samples of 1 (a better), 0.5 (tie), 0 (b better)."""
    out = []
    for xs, ys in zip(a, b):
        pairs = list(zip(xs, ys))
        out.append(sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in pairs) / len(pairs))
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


# ----------------------------------------------------------------------------------------------- evaluation


def load_policy(path: str | Path, name: str | None = None) -> Policy:
    path = Path(path)
    if not checkpoint.is_finished(path) and is_plain_model_dir(path):
        # A plain HF dir, e.g. a complete PPO checkpoint-N dir: loaded as a model, template alpaca.
        return Policy(name or path.name, path, "model", load_causal_lm(path), load_tokenizer(path))
    stage = checkpoint.require(path, kind=("sft", "ppo"))  # an unfinished stage dir is refused here
    model, tok = load_policy_from_stage(stage)
    return Policy(name or stage.kind, path, stage.kind, model, tok, stage.template)


def run_policy(
    pol: Policy, prompts: list[dict], params: SamplingParams, scorer=None, batch_size: int = 64
) -> Run:
    texts = [format_prompt(p["instruction"], p.get("input", ""), pol.template) for p in prompts]
    samples = generate(pol.model, pol.tokenizer, texts, params, batch_size=batch_size)
    run = Run(samples)
    tasks = [parse_task(p["instruction"], p.get("input", "")) for p in prompts]
    if all(t is not None for t in tasks):
        run.gold = [[judge(t, c.text, c.finished) for c in s] for t, s in zip(tasks, samples)]
    if scorer is not None:
        flat_p = [(p["instruction"], p.get("input", "")) for p, s in zip(prompts, samples) for _ in s]
        flat = scorer.score(flat_p, [c.text for s in samples for c in s])
        k = params.num_samples
        run.rm = [flat[i * k : (i + 1) * k] for i in range(len(samples))]
    return run


def kl_to_reference(pol: Policy, ref: Policy, prompts: list[dict], run: Run, temperature: float) -> float:
    """Monte-Carlo KL(policy || reference) in nats per response, on the policy's own samples."""
    texts, resps, fins = [], [], []
    for p, s in zip(prompts, run.samples):
        for c in s:
            texts.append(format_prompt(p["instruction"], p.get("input", ""), pol.template))
            resps.append(c.text)
            fins.append(c.finished)
    lp = response_logprobs(pol.model, pol.tokenizer, texts, resps, temperature=temperature, finished=fins)
    lr = response_logprobs(ref.model, ref.tokenizer, texts, resps, temperature=temperature, finished=fins)
    return statistics.fmean(a - b for a, b in zip(lp, lr))


def summarise(name: str, run: Run, refs: list[str] | None, suffix: str = "") -> dict:
    m: dict = {}
    flat_text = [c.text for s in run.samples for c in s]
    if run.gold is not None:
        flat_gold = [g for gs in run.gold for g in gs]
        m[f"{name}.gold_accuracy{suffix}"] = sum(g > 0 for g in flat_gold) / len(flat_gold)
        m[f"{name}.gold_score{suffix}"] = statistics.fmean(flat_gold)
    if run.rm is not None:
        per_prompt = [statistics.fmean(r) for r in run.rm]
        m[f"{name}.rm_score_mean{suffix}"] = statistics.fmean(per_prompt)
        m[f"{name}.rm_score_mean{suffix}_ci_low"], m[f"{name}.rm_score_mean{suffix}_ci_high"] = bootstrap_ci(
            per_prompt
        )
    m[f"{name}.response_length{suffix}"] = statistics.fmean(len(t.split()) for t in flat_text)
    m[f"{name}.finished{suffix}"] = sum(c.finished for s in run.samples for c in s) / len(flat_text)
    m[f"{name}.distinct_1{suffix}"] = distinct_n(flat_text, 1)
    m[f"{name}.distinct_2{suffix}"] = distinct_n(flat_text, 2)
    if refs is not None:
        import evaluate

        rouge = evaluate.load(str(ROUGE_METRIC))
        preds = [s[0].text for s in run.samples]
        m[f"{name}.rougeL{suffix}"] = rouge.compute(predictions=preds, references=refs)["rougeL"]
    return m


# ----------------------------------------------------------------------------------------------- plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plot_ppo_curves(log_path: Path) -> bytes | None:
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "objective/scores" in r]
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


# ----------------------------------------------------------------------------------------------- report


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def report_tables(
    metrics: dict, names: list[str]
) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """(headline rows, per-checkpoint metric names, per-checkpoint rows) from the flat metrics dict."""
    headline = []
    for k, v in metrics.items():
        if (
            ("winrate_vs" in k or ".kl_to_" in k)
            and not k.endswith(("_ci_low", "_ci_high"))
            and isinstance(v, float)
        ):
            ci = (
                f" [{metrics[k + '_ci_low']:.3f}, {metrics[k + '_ci_high']:.3f}]"
                if k + "_ci_low" in metrics
                else ""
            )
            headline.append((k, f"{v:.3f}{ci}"))
    per: dict[str, dict[str, str]] = {}
    for k, v in metrics.items():
        name, _, metric = k.partition(".")
        if (
            name in names
            and isinstance(v, (int, float))
            and "winrate_vs" not in metric
            and "kl_to_" not in metric
        ):
            per.setdefault(metric, {})[name] = _fmt(v)
    rows = [[metric] + [vals.get(n, "") for n in names] for metric, vals in per.items()]
    return headline, list(per), rows


def report_files(
    metrics: dict, plots: dict[str, bytes], table: list[dict], names: list[str]
) -> dict[str, bytes | str]:
    """The report's files by name: the plots, report.md and report.html (metrics.json is added by the caller)."""
    headline, _, rows = report_tables(metrics, names)
    md = [
        "# Checkpoint comparison",
        "",
        f"{metrics.get('num_prompts')} prompts; sampling {metrics.get('sampling')}",
        "",
    ]
    md += [
        "## Headline (win-rates: ties count 0.5; 95% bootstrap CI over prompts)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    md += [f"| `{k}` | {v} |" for k, v in headline]
    md += [
        "",
        "## Per checkpoint",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += [""] + [f"![{n}]({n}.png)" for n in plots]
    md += [
        "",
        "## Sample responses (greedy)",
        "",
        "| prompt | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for row in table:
        cells = [row["prompt"]] + [row[n] for n in names]
        md.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    report_md = "\n".join(md) + "\n"

    esc = html.escape
    head_rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td>{esc(v)}</td></tr>" for k, v in headline)
    per_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    imgs = "".join(
        f'<figure><img alt="{esc(n)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{esc(n)}</figcaption></figure>"
        for n, png in plots.items()
    )
    cols = ["prompt", *names]
    samples = "".join("<tr>" + "".join(f"<td>{esc(row[c])}</td>" for c in cols) + "</tr>" for row in table)
    th = "".join(f"<th>{esc(c)}</th>" for c in ["metric", *names])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rlhf compare report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;
white-space:pre-wrap}}img{{max-width:100%}}</style></head>
<body><h1>Checkpoint comparison</h1><p>{esc(str(metrics.get("num_prompts")))} prompts; checkpoints:
{esc(", ".join(f"{n} = {metrics.get('checkpoints', {}).get(n, '')}" for n in names))}</p>
<h2>Headline</h2><p>Win-rates count ties as 0.5; brackets are 95% bootstrap CIs over prompts.</p>
<table>{head_rows}</table><h2>Per checkpoint</h2><table><tr>{th}</tr>{per_rows}</table><h2>Plots</h2>{imgs}
<h2>Sample responses (greedy)</h2><table><tr>{"".join(f"<th>{esc(c)}</th>" for c in cols)}</tr>{samples}</table>
</body></html>"""
    return {
        **{f"{name}.png": png for name, png in plots.items()},
        "report.md": report_md,
        "report.html": page,
    }


def compare(
    paths: list[str],
    prompts_path: str,
    out: str | Path,
    *,
    reference: str | None = None,
    reward: str | None = None,
    names: list[str] | None = None,
    limit: int | None = None,
    temperature: float = 0.7,
    top_p: float = 1.0,
    top_k: int = 0,
    num_samples: int = 4,
    max_new_tokens: int = 32,
    seed: int = 0,
    sweep_temperatures: tuple[float, ...] = (0.3, 0.7, 1.0),
    sweep_top_ps: tuple[float, ...] = (0.9, 1.0),
    sweep_prompts: int = 100,
    overopt_prompts: int = 100,
    labels_db: str | None = None,
    export_pairs: str | None = None,
    batch_size: int = 64,
) -> dict:
    started = time.time()
    prompts = load_instructions(prompts_path, require_output=False)[:limit]
    refs = [p["output"] for p in prompts] if all(p.get("output") for p in prompts) else None
    if names and len(names) != len(paths):
        raise UserError(
            f"--names has {len(names)} names for {len(paths)} checkpoints", "command line", "--names"
        )
    for p in paths:  # every checkpoint is validated before any model loads
        if not Path(p).is_dir():
            raise UserError("checkpoint does not exist", p)
        if (Path(p) / checkpoint.MANIFEST).exists() or not is_plain_model_dir(Path(p)):
            checkpoint.require(p, kind=("sft", "ppo"))  # unfinished, wrong kind, no weights: refused now
    scorer = None
    if reward:
        from rlhf.scoring import RewardScorer

        scorer = RewardScorer.from_stage(reward)
    out = require_writable_dir(out)  # refused now, not after minutes of generation
    policies = [load_policy(p, (names or [None] * len(paths))[i]) for i, p in enumerate(paths)]
    if len({p.name for p in policies}) < len(policies):
        policies = [
            Policy(f"{p.name}{i}", p.path, p.kind, p.model, p.tokenizer, p.template)
            for i, p in enumerate(policies)
        ]
    names = [p.name for p in policies]
    ref_policy = None
    if reference:
        ref_policy = next(
            (p for p in policies if p.path.resolve() == Path(reference).resolve()), None
        ) or load_policy(reference, "reference")

    greedy = SamplingParams(0.0, 0, 1.0, max_new_tokens, 1, seed)
    sampled = SamplingParams(temperature, top_k, top_p, max_new_tokens, num_samples, seed)
    metrics: dict = {
        "num_prompts": len(prompts),
        "checkpoints": {p.name: str(p.path) for p in policies},
        "sampling": sampled.to_dict(),
    }
    runs: dict[str, dict[str, Run]] = {}
    for pol in policies:
        runs[pol.name] = {
            "greedy": run_policy(pol, prompts, greedy, scorer, batch_size),
            "sampled": run_policy(pol, prompts, sampled, scorer, batch_size),
        }
        metrics.update(summarise(pol.name, runs[pol.name]["greedy"], refs))
        metrics.update(summarise(pol.name, runs[pol.name]["sampled"], None, "_sampled"))
        if ref_policy is not None and ref_policy is not pol and temperature > 0:
            ref_name = ref_policy.name if ref_policy.name != "reference" else Path(reference).name
            metrics[f"{pol.name}.kl_to_{ref_name}"] = kl_to_reference(
                pol, ref_policy, prompts, runs[pol.name]["sampled"], temperature
            )

    matrices = {}
    for judge_name, attr in (("gold", "gold"), ("rm", "rm")):
        for mode in ("greedy", "sampled"):
            scores = {n: getattr(runs[n][mode], attr) for n in names}
            if any(v is None for v in scores.values()):
                continue
            mat = winrate_matrix(scores, seed)
            matrices[f"{judge_name}_{mode}"] = mat
            suffix = "" if mode == "greedy" else "_sampled"
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    if i != j:
                        key = f"{a}.{judge_name}_winrate_vs_{b}{suffix}"
                        metrics[key] = mat["winrate"][i][j]
                        metrics[key + "_ci_low"], metrics[key + "_ci_high"] = (
                            mat["ci_low"][i][j],
                            mat["ci_high"][i][j],
                        )
    metrics["winrate_matrices"] = matrices

    # Sampling sweep: accuracy (or reward) vs diversity per checkpoint.
    sweep = []
    sub = prompts[:sweep_prompts]
    for pol in policies if sweep_prompts else []:
        for t in sweep_temperatures:
            for tp in sweep_top_ps:
                run = run_policy(
                    pol, sub, SamplingParams(t, top_k, tp, max_new_tokens, 1, seed), scorer, batch_size
                )
                s = summarise(pol.name, run, None)
                point = {
                    "name": pol.name,
                    "temperature": t,
                    "top_p": tp,
                    "distinct_2": s[f"{pol.name}.distinct_2"],
                }
                if f"{pol.name}.gold_accuracy" in s:
                    point["gold_accuracy"] = s[f"{pol.name}.gold_accuracy"]
                if f"{pol.name}.rm_score_mean" in s:
                    point["rm_score_mean"] = s[f"{pol.name}.rm_score_mean"]
                sweep.append(point)
    metrics["sweep"] = sweep

    plots: dict[str, bytes] = {}
    # PPO: training curves, and reward over-optimisation across its saved checkpoints.
    for pol in policies:
        if pol.kind != "ppo":
            continue
        log = pol.path / LOG_FILE
        if log.is_file() and (png := plot_ppo_curves(log)):
            plots[f"ppo_curves_{pol.name}"] = png
        ckpts = sorted(
            (d for d in pol.path.glob("checkpoint-*") if d.name[11:].isdigit() and is_plain_model_dir(d)),
            key=lambda d: int(d.name.split("-")[1]),
        )
        if ckpts and scorer is not None and overopt_prompts:
            sub = prompts[:overopt_prompts]
            points = []
            base = next((p for p in policies if p.kind == "sft"), None)
            chain = (
                ([("sft", base)] if base else [])
                + [(d.name, load_policy(d)) for d in ckpts]
                + [("final", pol)]
            )
            for label, p in chain:
                r = run_policy(p, sub, greedy, scorer, batch_size)
                point = {"label": label, "rm_score": statistics.fmean(x[0] for x in r.rm)}
                if r.gold is not None:
                    point["gold_score"] = statistics.fmean(x[0] for x in r.gold)
                points.append(point)
            metrics[f"{pol.name}.overoptimisation"] = points
            if png := plot_overoptimisation(points):
                plots[f"overoptimisation_{pol.name}"] = png
    pairs = [(a, b) for i, a in enumerate(names) for b in names[:i]]
    if png := plot_winrates(metrics, pairs):
        plots["winrates"] = png
    if png := plot_sweep(sweep):
        plots["sampling_sweep"] = png

    if labels_db:
        from rlhf.label import human_winrate

        metrics["human"] = human_winrate(labels_db)
    if export_pairs and len(policies) >= 2:
        a, b = names[:2]
        rows = [
            {
                "id": f"c{i:05d}",
                "instruction": p["instruction"],
                "input": p.get("input", ""),
                "prompt": p["instruction"] + (f"\n\n{p['input']}" if p.get("input") else ""),
                "responses": [runs[a]["sampled"].samples[i][0].text, runs[b]["sampled"].samples[i][0].text],
                "sources": [a, b],
            }
            for i, p in enumerate(prompts)
        ]
        atomic_write_jsonl(export_pairs, rows)

    table = [
        {
            "prompt": p["instruction"] + (f"\n{p['input']}" if p.get("input") else ""),
            **{n: runs[n]["greedy"].samples[i][0].text for n in names},
        }
        for i, p in enumerate(prompts[:12])
    ]
    metrics["compare_seconds"] = time.time() - started
    # All files of the report are written before any replaces its old version, metrics.json (what marks a report
    # finished) last: a full disk or a kill never leaves new plots next to an old metrics.json.
    files = report_files(metrics, plots, table, names)
    atomic_write_files(
        out, {**files, "metrics.json": json.dumps(metrics, indent=2, ensure_ascii=False) + "\n"}
    )
    return metrics


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}", "command line") from None


@exit_on_user_error
def cli(argv=None, prog="rlhf compare") -> int:
    p = ArgumentParser(prog=prog, description="Compare policy checkpoints on the same prompts and samples.")
    p.add_argument("checkpoints", nargs="+", help="finished sft/ppo stage dirs (or plain HF model dirs)")
    p.add_argument(
        "--prompts", required=True, help="Alpaca json/jsonl; outputs (if present) are ROUGE references"
    )
    p.add_argument("--out", required=True, help="report dir")
    p.add_argument("--reference", help="checkpoint to measure KL against (e.g. the SFT dir)")
    p.add_argument("--reward", help="reward stage dir for reward-model scores and win-rates")
    p.add_argument("--names", help="comma-separated display names")
    p.add_argument("--limit", type=int)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep-temperatures", default="0.3,0.7,1.0")
    p.add_argument("--sweep-top-ps", default="0.9,1.0")
    p.add_argument(
        "--sweep-prompts", type=int, default=100, help="prompts per sweep point (0 disables the sweep)"
    )
    p.add_argument("--overopt-prompts", type=int, default=100)
    p.add_argument("--labels-db", help="labeling app db: include the human win-rate")
    p.add_argument(
        "--export-pairs", help="write the first two checkpoints' responses for blind human comparison"
    )
    a = p.parse_args(argv)
    refuse_overlap(
        {"CHECKPOINTS": a.checkpoints, "--prompts": a.prompts, "--reference": a.reference, "--reward": a.reward,
         "--labels-db": a.labels_db},
        {"--out": a.out, "--export-pairs": a.export_pairs},
    )  # fmt: skip
    m = compare(
        a.checkpoints,
        a.prompts,
        a.out,
        reference=a.reference,
        reward=a.reward,
        names=a.names.split(",") if a.names else None,
        limit=a.limit,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=a.top_k,
        num_samples=a.num_samples,
        max_new_tokens=a.max_new_tokens,
        seed=a.seed,
        sweep_temperatures=_floats(a.sweep_temperatures),
        sweep_top_ps=_floats(a.sweep_top_ps),
        sweep_prompts=a.sweep_prompts,
        overopt_prompts=a.overopt_prompts,
        labels_db=a.labels_db,
        export_pairs=a.export_pairs,
    )
    print(f"compare: report at {Path(a.out) / 'report.html'}")
    for k, v in m.items():
        if "winrate_vs" in k and not k.endswith(("_ci_low", "_ci_high")):
            print(f"  {k}: {v:.3f} [{m[k + '_ci_low']:.3f}, {m[k + '_ci_high']:.3f}]")
    return 0
