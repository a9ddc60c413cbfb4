"""`clipclap report --format html`: one standalone page a researcher can send to a colleague.

The page holds the results table (the columns of every other format, mean ± std, the 95 %
interval under each value, † where a row does not differ from the reference), the paired
tests, the figures (PNG embedded as data: URLs, with their captions) and each run's settings.
Nothing is fetched when it is opened: no scripts, fonts or style sheets from elsewhere.
"""

from __future__ import annotations

import base64
import datetime
import json
from html import escape as e
from pathlib import Path

from clipclap_cli.metric_table import LABELS, METRIC_TABLE
from clipclap_cli.report.grouping import Cell, layout, published_rows
from clipclap_cli.report.loading import RunResult
from clipclap_cli.report.tables import (
    INTERVAL_TITLE,
    MISSING,
    PUBLISHED_RULE,
    format_cell,
    format_interval,
    format_n,
    paper_note,
    row_n,
    significance_note,
    significance_rows,
    significance_title,
    table_note,
)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #111; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #bbb; padding-bottom: 0.2rem; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.6rem; }
th { background: #eee; }
td.num { text-align: right; white-space: nowrap; }
td .ci { display: block; color: #555; font-size: 0.8em; }
caption { caption-side: bottom; text-align: left; color: #444; font-size: 0.9em; padding-top: 0.4rem; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #333; font-size: 0.9em; }
details { margin: 0.3rem 0; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.85em; }
"""


def page(cells: list[Cell], metrics: tuple[str, ...], runs: list[RunResult] | None = None,
         figures: list[Path] | None = None, figures_note: str = "", paper: bool = False) -> str:
    """The whole page. `runs` adds their settings; `figures` (PNG files written by
    `clipclap_cli.report.plots`) are embedded with their titles as captions, `figures_note`
    above them (or in their place, when there are none); `paper`: the results table in the
    paper's layout (`results_table`)."""
    from clipclap_cli import __version__

    datasets = list(dict.fromkeys(c.dataset for c in cells))
    title = f"clipclap results: {', '.join(datasets)}"
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [f"<h1>{e(title)}</h1>",
             f'<p class="meta">Made by clipclap {e(__version__)} on {e(when)}'
             + (f" from {len(runs)} runs" if runs else "") + ".</p>",
             "<h2>Results</h2>", results_table(cells, metrics, paper)]
    tests = significance_rows(cells, metrics)
    if tests:
        head = "".join(f"<th>p ({LABELS[m]})</th>" for m in metrics)
        body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row[:3])
                       + "".join(f'<td class="num">{e(v)}</td>' for v in row[3:]) + "</tr>\n" for row in tests)
        parts += ["<h2>Paired tests</h2>", f"<p>{e(significance_title(cells))}.</p>",
                  f"<table>\n<thead><tr><th>Method</th><th>Dataset</th><th>Seeds</th>{head}</tr></thead>\n"
                  f"<tbody>\n{body}</tbody>\n</table>", f"<p>{e(significance_note(cells))}</p>"]
    if figures:
        parts += ["<h2>Figures</h2>", *([f"<p>{e(figures_note)}</p>"] if figures_note else []),
                  *(_figure(path) for path in figures)]
    elif figures_note:
        parts += ["<h2>Figures</h2>", f"<p>{e(figures_note)}</p>"]
    if runs:
        parts += ["<h2>Runs</h2>", _runs_table(runs)]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{e(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def results_table(cells: list[Cell], metrics: tuple[str, ...], paper: bool = False) -> str:
    """Methods x datasets, the number of seeds n and the `metrics` columns; the 95 % interval
    (cut to 0-100, marked over 2 seeds) under each mean of n >= 2. `paper`: the datasets in the
    paper's order, one n per row, the published rows in a tbody of their own under a rule."""
    methods, datasets, by = layout(cells, paper)
    published = published_rows(cells) if paper else set()
    k = len(metrics) + (0 if paper else 1)
    top = ('<th rowspan="2">n</th>' if paper else "") + "".join(f'<th colspan="{k}">{e(d)}</th>' for d in datasets)
    sub = "".join(f"<th>{label}</th>" for _ in datasets
                  for label in ((() if paper else ("n",)) + tuple(map(LABELS.get, metrics))))
    rows = []
    for method in methods:
        tds = [f'<td class="num">{e(row_n(method, datasets, by))}</td>'] if paper else []
        for d in datasets:
            cell = by.get((method, d))
            if not paper:
                tds.append(f'<td class="num">{e(format_n(cell))}</td>')
            for m in metrics:
                ci = cell.ci95.get(m) if cell else None
                extra = f'<span class="ci">95 % CI {e(format_interval(cell, m))}</span>' if ci else ""
                tds.append(f'<td class="num">{e(format_cell(cell, m))}{extra}</td>')
        if method in published and method == next(m for m in methods if m in published):
            rows.append(f'</tbody>\n<tbody class="published" style="border-top: 3px double #444" '
                        f'title="{PUBLISHED_RULE}">\n')  # the published rows, under a rule
        rows.append(f"<tr><td>{e(method)}</td>{''.join(tds)}</tr>\n")
    note = table_note(cells) + (paper_note(methods, datasets, by) if paper else "")
    return (f'<table>\n<thead><tr><th rowspan="2">Method</th>{top}</tr><tr>{sub}</tr></thead>\n'
            f"<tbody>\n{''.join(rows)}</tbody>\n<caption>Percent; {e(note)}"
            + (f"; under each mean: {e(INTERVAL_TITLE[0].lower() + INTERVAL_TITLE[1:])}" if any(c.ci95 for c in cells)
               else "") + ".</caption>\n</table>")


def _figure(path: Path) -> str:
    """A PNG as an embedded image, captioned by the title and axis labels it carries as text."""
    from PIL import Image  # matplotlib's own dependency: figures exist only where it is installed

    with Image.open(path) as img:
        text = dict(getattr(img, "text", {}))
    title = text.get("Title", path.stem).replace("\n", ": ")
    caption = f"{title} ({text['Description']})" if text.get("Description") else title
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure>\n<img src="data:image/png;base64,{data}" alt="{e(title)}">\n'
            f"<figcaption>{e(caption)}. File: {e(path.name)}</figcaption>\n</figure>")


def _runs_table(runs: list[RunResult]) -> str:
    """One row per run: what it is and its test results (MISSING for a metric its results.json
    lacks); its whole settings under a fold."""
    rows = []
    for run in runs:
        test, train = run.results["test"], run.spec.get("train", {})
        settings = {k: run.spec[k] for k in ("head", "params", "dataset", "split", "train")
                    if k in run.spec}
        nums = "".join(f'<td class="num">{100 * test[m.name]:.2f}</td>' if m.name in test
                       else f'<td class="num">{MISSING}</td>' for m in METRIC_TABLE)
        beta = f'{test["beta"]:.4f}' if isinstance(test.get("beta"), (int, float)) else MISSING
        rows.append(
            f"<tr><td>{e(run.method)}</td><td>{e(run.dataset)}</td><td>{run.seed}</td>{nums}"
            f'<td class="num">{beta}</td><td class="num">{e(str(train.get("epochs", "")))}</td>'
            f"<td><details><summary>{e(str(run.path))}</summary><pre>{e(json.dumps(settings, indent=2))}</pre>"
            "</details></td></tr>\n")
    labels = "".join(f"<th>{m.label}</th>" for m in METRIC_TABLE)
    return ("<table>\n<thead><tr><th>Method</th><th>Dataset</th><th>Seed</th>"
            f"{labels}<th>β*</th><th>Epochs</th><th>Folder and settings</th></tr></thead>\n"
            f"<tbody>\n{''.join(rows)}</tbody>\n<caption>Test results in percent at β*, the bias chosen on "
            "validation; epochs: stage 1.</caption>\n</table>")
