"""The report's files: report.md and report.html, one self-contained page that works offline (plots inlined as PNG
data URIs, its CSS and script inline, nothing fetched). What a reader sees first: a headline sentence per method,
then the comparison table, the plots, and an explorer of every prompt with every method's answer (filter by win,
loss or tie against the baseline; search). The full metric listing comes last."""

from __future__ import annotations

import base64
import html

from rlhf.evaluation.table import TABLE_NOTES, breakdown_table, display_name, table_body, table_header


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def report_tables(
    metrics: dict, names: list[str]
) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """(win-rate and KL rows, per-checkpoint metric names, per-checkpoint rows) from the flat metrics dict."""
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


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _scores(answer: dict) -> str:
    parts = []
    if answer["gold"] is not None:
        parts.append(f"gold {answer['gold']:.3g}")
    if answer["rm"] is not None:
        parts.append(f"RM {answer['rm']:.3f}")
    return " · ".join(parts)


def report_md(metrics: dict, plots: dict[str, bytes], explorer: list[dict], names: list[str]) -> str:
    comparison = metrics.get("comparison", [])
    md = [
        "# Checkpoint comparison",
        "",
        f"{metrics.get('num_prompts')} prompts; sampling {metrics.get('sampling')}",
        "",
    ]
    md += [f"- {h}" for h in metrics.get("headlines", [])]
    if comparison:
        header = table_header(comparison)
        md += ["", f"## Methods against {display_name(metrics.get('baseline', ''))}", ""]
        md += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        md += ["| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in table_body(comparison)]
        md += ["", TABLE_NOTES]
    if parts := breakdown_table(metrics, names):
        title, header, rows = parts
        md += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        md += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    md += ["", "Every response generated, with its scores: `responses.jsonl`.", ""]
    md += [f"![{n}]({n}.png)" for n in plots]
    headline, _, rows = report_tables(metrics, names)
    md += [
        "",
        "## Win-rates and KL (ties count 0.5; 95% bootstrap CI over prompts)",
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
    md += [
        "",
        "## Sample responses (greedy; every prompt in report.html's explorer)",
        "",
        "| prompt | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for row in explorer[:12]:
        cells = [row["prompt"]] + [row["answers"][n]["text"] for n in names]
        md.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(md) + "\n"


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}.num{text-align:right;white-space:nowrap}
#headlines li{margin:.4em 0;font-size:1.05em}.note{color:#555;font-size:.9em;max-width:60em}
figure{margin:1.5em 0}img{max-width:100%}.wide{overflow-x:auto}
#ex-controls{display:flex;gap:1.2em;flex-wrap:wrap;align-items:center;position:sticky;top:0;background:#fff;
padding:.6em 0;border-bottom:1px solid #ddd}
#explorer td{white-space:pre-wrap;max-width:22em}#explorer .sc{color:#666;font-size:.8em;margin-top:.3em}
#explorer td.win{background:#e6f4ea}#explorer td.loss{background:#fce8e6}#explorer td.tie{background:#f6f6f6}
"""

# Filters the explorer's rows: the chosen method's outcome against the baseline, and a case-insensitive search of
# the prompt and every answer. Rows are plain HTML, so without scripts the page still shows all of them.
SCRIPT = """
(function () {
  const method = document.getElementById("ex-method"), outcome = document.getElementById("ex-outcome");
  const search = document.getElementById("ex-search"), count = document.getElementById("ex-count");
  const rows = Array.from(document.querySelectorAll("#explorer tbody tr"));
  const texts = rows.map(r => r.textContent.toLowerCase());
  function apply() {
    const m = method ? method.value : null, o = outcome ? outcome.value : "all";
    const q = search.value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((r, i) => {
      const ok = (o === "all" || r.dataset["o" + m] === o) && (!q || texts[i].includes(q));
      r.hidden = !ok;
      if (ok) shown++;
    });
    count.textContent = shown + " of " + rows.length + " prompts";
  }
  [method, outcome].forEach(e => e && e.addEventListener("change", apply));
  search.addEventListener("input", apply);
  apply();
})();
"""


def caption(plot: str, baseline: str) -> str:
    """What a plot (named as compare names them) shows, in words."""
    if plot == "winrates":
        return f"Win-rate of each method against {display_name(baseline)}, by the gold judge and the reward model."
    if plot == "sampling_sweep":
        return "Sampling sweep: quality against diversity (distinct-2) per temperature T and top-p."
    _, sep, name = plot.partition("_curves_")
    if sep:
        return f"{display_name(name)}: training curves from its log.jsonl."
    if plot.startswith("overoptimisation_"):
        return (
            f"{display_name(plot.removeprefix('overoptimisation_'))}: gold score against reward-model score across "
            "its saved checkpoints; the reward rising while the gold score falls is over-optimisation."
        )
    if plot.startswith("checkpoints_"):
        return (
            f"{display_name(plot.removeprefix('checkpoints_'))}: gold score across its saved checkpoints, in training "
            "order (no reward model given)."
        )
    return plot


def explorer_html(explorer: list[dict], names: list[str], baseline: str, judge: str | None) -> str:
    esc = html.escape
    methods = [n for n in names if explorer and n in explorer[0]["outcomes"]]
    judge_words = {"gold": "the gold judge", "rm": "the reward model"}.get(judge or "", "")
    controls = []
    if methods:
        options = "".join(
            f'<option value="{i}">{esc(display_name(n))}</option>' for i, n in enumerate(methods)
        )
        controls.append(f'<label>Method <select id="ex-method">{options}</select></label>')
        controls.append(
            f'<label>against {esc(display_name(baseline))} by {esc(judge_words)}: <select id="ex-outcome">'
            '<option value="all">all prompts</option><option value="win">wins</option>'
            '<option value="loss">losses</option><option value="tie">ties</option></select></label>'
        )
    controls.append(
        '<label>Search <input id="ex-search" type="search" placeholder="prompt or answer text"></label>'
    )
    controls.append('<span id="ex-count"></span>')
    head = "<th>#</th><th>prompt</th>" + "".join(f"<th>{esc(display_name(n))}</th>" for n in names)
    body = []
    for i, row in enumerate(explorer):
        attrs = "".join(f' data-o{k}="{row["outcomes"][n]}"' for k, n in enumerate(methods))
        cells = [f'<td class="num">{i + 1}</td>', f"<td>{esc(row['prompt'])}</td>"]
        for n in names:
            a = row["answers"][n]
            cls = f' class="{row["outcomes"][n]}"' if n in row["outcomes"] else ""
            cells.append(f'<td{cls}>{esc(a["text"])}<div class="sc">{esc(_scores(a))}</div></td>')
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return (
        f'<div id="ex-controls">{"".join(controls)}</div>'
        f'<div class="wide"><table id="explorer"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def report_html(metrics: dict, plots: dict[str, bytes], explorer: list[dict], names: list[str]) -> str:
    esc = html.escape
    comparison = metrics.get("comparison", [])
    baseline = metrics.get("baseline", names[0] if names else "")
    judge = next((r["judge"] for r in comparison if r.get("judge")), None)
    lead = "".join(f"<li>{esc(h)}</li>" for h in metrics.get("headlines", []))
    table = ""
    if comparison:
        header = "".join(f"<th>{esc(h)}</th>" for h in table_header(comparison))
        rows = "".join(
            "<tr>"
            + "".join(f"<td{'' if j == 0 else ' class=num'}>{esc(c)}</td>" for j, c in enumerate(cells))
            + "</tr>"
            for cells in table_body(comparison)
        )
        table = (
            f"<h2>Methods against {esc(display_name(baseline))}</h2>"
            f'<div class="wide"><table id="comparison"><tr>{header}</tr>{rows}</table></div>'
            f'<p class="note">{esc(TABLE_NOTES)}</p>'
        )
    if parts := breakdown_table(metrics, names):
        title, header, part_rows = parts
        th = "".join(f"<th>{esc(h)}</th>" for h in header)
        trs = "".join(
            "<tr>"
            + "".join(f"<td{'' if j == 0 else ' class=num'}>{esc(c)}</td>" for j, c in enumerate(r))
            + "</tr>"
            for r in part_rows
        )
        table += (
            f"<h2>{esc(title)}</h2>"
            f'<div class="wide"><table id="breakdown"><tr>{th}</tr>{trs}</table></div>'
            '<p class="note">Greedy: each checkpoint\'s greedy answer (Best-of-N: its first pick); sampled: every '
            "answer at the sampling settings; each rate over the answers to the prompts that have that part.</p>"
        )
    imgs = "".join(
        f'<figure><img alt="{esc(n)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{esc(caption(n, baseline))}</figcaption></figure>"
        for n, png in plots.items()
    )
    headline, _, rows = report_tables(metrics, names)
    head_rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td>{esc(v)}</td></tr>" for k, v in headline)
    per_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    th = "".join(f"<th>{esc(c)}</th>" for c in ["metric", *names])
    checkpoints = ", ".join(f"{n} = {metrics.get('checkpoints', {}).get(n, '')}" for n in names)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>rlhf compare report</title>
<style>{STYLE}</style></head>
<body><h1>Checkpoint comparison</h1>
<p>{esc(str(metrics.get("num_prompts")))} prompts; checkpoints: {esc(checkpoints)}</p>
<h2>In short</h2><ul id="headlines">{lead or "<li>One checkpoint: nothing to compare it with.</li>"}</ul>
{table}<h2>Plots</h2>{imgs}
<h2>Every prompt</h2><p class="note">Greedy answers (Best-of-N: its first pick); cells are coloured by the outcome
against {esc(display_name(baseline))}. Every sampled answer too is in responses.jsonl.</p>
{explorer_html(explorer, names, baseline, judge)}
<details><summary><h2 style="display:inline">All metrics</h2></summary>
<p class="note">Win-rates count ties as 0.5; brackets are 95% bootstrap CIs over prompts.</p>
<table>{head_rows}</table><table><tr>{th}</tr>{per_rows}</table></details>
<script>{SCRIPT}</script>
</body></html>"""


def report_files(
    metrics: dict, plots: dict[str, bytes], explorer: list[dict], names: list[str]
) -> dict[str, bytes | str]:
    """The report's files by name: the plots, report.md and report.html (metrics.json is added by the caller).
    `explorer`: rlhf.evaluation.table.explorer_rows."""
    return {
        **{f"{name}.png": png for name, png in plots.items()},
        "report.md": report_md(metrics, plots, explorer, names),
        "report.html": report_html(metrics, plots, explorer, names),
    }
