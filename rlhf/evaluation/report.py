"""The report's files: report.md and a self-contained report.html (plots inlined as PNG data URIs)."""

from __future__ import annotations

import base64
import html


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
        "Every response generated, with its scores: `responses.jsonl`.",
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
