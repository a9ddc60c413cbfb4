"""Results tables like the paper's (methods x datasets: S, U, HM, ZSL), in every format of
`clipclap report`: markdown, LaTeX and HTML wide, CSV and JSON one row per cell.

The columns are metric_table's, in its order, in every format. A metric a cell lacks (a
published result without S and U, runs written before the metric was computed) is marked: '–'
in the wide tables, an empty CSV cell, a key left out of the JSON cell's `mean` and `std`.
No torch here: `clipclap report` stays quick.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from clipclap_cli.errors import RunError
from clipclap_cli.files import json_text
from clipclap_cli.metric_table import CSV_STATS, LABELS, METRICS
from clipclap_cli.report.grouping import PAPER, Cell, layout
from clipclap_cli.report.seed_statistics import SIGNIFICANCE

FORMATS = ("markdown", "latex", "html", "csv", "json")

EXTENSIONS = {".md": "markdown", ".markdown": "markdown", ".tex": "latex", ".latex": "latex", ".html": "html",
              ".htm": "html", ".csv": "csv", ".json": "json"}
"The format `report -o FILE` writes, by FILE's extension (any other extension: --format, else markdown)"

MISSING = "–"
"A wide table's mark for a cell, or a metric of it, that is not there"
SAME = "†"
"The mark of a value that does not differ significantly from the reference row's"


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise RunError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def pick_format(fmt: str | None, output: Path | None) -> str:
    """The format of a report: `fmt` (--format) where given, else the one `output`'s extension
    names (EXTENSIONS), else markdown. A --format that contradicts the extension is refused:
    'report.html' holding Markdown is never written."""
    if fmt is not None:
        check_format(fmt)
    by_name = EXTENSIONS.get(output.suffix.lower()) if output is not None else None
    if fmt is not None and by_name is not None and fmt != by_name:
        names = ", ".join(k for k, v in EXTENSIONS.items() if v == fmt)
        raise RunError(f"--format {fmt} contradicts the output's extension ({output.name} is {by_name}); "
                       f"drop --format, or name the file for {fmt} ({names}); nothing was written")
    return fmt or by_name or "markdown"


def format_cell(cell: Cell | None, metric: str, pm: str = " ± ", mark: str = SAME) -> str:
    """One table entry: 'mean ± std' (the mean alone for one seed), `mark` where the row does not
    differ from the reference row; MISSING where the cell or its metric is missing."""
    if cell is None or metric not in cell.mean:
        return MISSING
    same = mark if cell.against.get("differs", {}).get(metric) is False else ""
    if cell.n <= 1:
        return f"{cell.mean[metric]:.2f}{same}"
    return f"{cell.mean[metric]:.2f}{pm}{cell.std[metric]:.2f}{same}"


def table_note(cells: list[Cell]) -> str:
    """What the table's numbers are: the caption every wide format prints under it."""
    counts = sorted({c.n for c in cells if c.n})
    note = (f"mean ± std over {'/'.join(map(str, counts))} seeds" if counts != [1] else "one seed per entry")
    if any(c.replaced for c in cells):
        note += "; a seed trained twice counts once, by its newest run"
    if any(c.n == 0 for c in cells):
        note += f"; '{PAPER.strip()}': the published results"
    lacking = [LABELS[m] for m in METRICS if any(c.n and m not in c.mean for c in cells)]
    if lacking:
        note += (f"; {MISSING}: {', '.join(lacking)} not in the results.json of every run of the entry "
                 "(written before clipclap computed it)")
    if any(c.data_tag for c in cells):
        note += ("; [data ...]: runs of one dataset trained on different data (the data digest in their "
                 "config.json) are separate columns, never averaged")
    compared = [c for c in cells if c.against.get("p")]
    if any(differs is False for c in compared for differs in c.against["differs"].values()):
        note += (f"; {SAME} no significant difference from {compared[0].against['method']} (paired t-test over the "
                 f"seeds both have, p >= {SIGNIFICANCE})")
    elif compared:
        note += f"; every compared row differs significantly from {compared[0].against['method']} (p < {SIGNIFICANCE})"
    return note


def format_p(p: float) -> str:
    """A p-value as people read it: three decimals, or scientific notation below 0.001."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def significance_rows(cells: list[Cell], metrics: tuple[str, ...]) -> list[list[str]]:
    """The paired tests as table rows: method, dataset, the seeds both rows have, and per metric
    the p-value, marked SAME where the row does not differ from the reference row (MISSING where
    there is no test of that metric)."""
    rows = []
    for c in cells:
        p, differs = c.against.get("p"), c.against.get("differs", {})
        if p:
            rows.append([c.method, c.dataset, " ".join(map(str, c.against["shared_seeds"]))]
                        + [format_p(p[m]) + ("" if differs[m] else SAME) if m in p else MISSING for m in metrics])
    return rows


def significance_title(cells: list[Cell]) -> str:
    reference = next(c.against["method"] for c in cells if c.against.get("p"))
    return (f"Paired t-tests against {reference}: two-sided p-values over the seeds both rows have "
            f"({SAME}: p >= {SIGNIFICANCE}, no significant difference)")


def render(cells: list[Cell], fmt: str, metrics: tuple[str, ...] = METRICS) -> str:
    """The table in one of FORMATS: markdown, latex and html wide (methods x datasets, the
    `metrics` columns in METRICS order in each), csv and json one row per cell with every metric,
    its 95 % interval and p-value. Markdown and HTML add the paired tests as a second table."""
    check_format(fmt)
    metrics = tuple(m for m in METRICS if m in metrics)  # one column order in every format
    if fmt == "json":
        return json_text([c.__dict__ for c in cells], what="the report")
    if fmt == "csv":
        return _csv(cells)
    if fmt == "html":
        from clipclap_cli.report.html_page import page

        return page(cells, metrics)
    return _markdown(cells, metrics) if fmt == "markdown" else _latex(cells, metrics)


def _csv(cells: list[Cell]) -> str:
    """One row per cell: every metric's CSV_STATS columns, empty where the cell has no value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "dataset", "n", "seeds", "against", "shared_seeds"]
               + [f"{m}_{s}" for m in METRICS for s in CSV_STATS])
    for c in cells:
        row = [c.method, c.dataset, c.n, " ".join(map(str, c.seeds)), c.against.get("method", ""),
               " ".join(map(str, c.against.get("shared_seeds", [])))]
        for m in METRICS:
            ci, p = c.ci95.get(m), c.against.get("p", {}).get(m)
            differs = c.against.get("differs", {}).get(m)
            row += [f"{c.mean[m]:.4f}" if m in c.mean else "", f"{c.std[m]:.4f}" if m in c.std else "",
                    f"{ci[0]:.4f}" if ci else "", f"{ci[1]:.4f}" if ci else "", f"{p:.4g}" if p is not None else "",
                    "" if differs is None else str(differs).lower()]
        w.writerow(row)
    return buf.getvalue()


def _markdown(cells: list[Cell], metrics: tuple[str, ...]) -> str:
    methods, datasets, by = layout(cells)
    head = "| Method | " + " | ".join(f"{d} {LABELS[m]}" for d in datasets for m in metrics) + " |"
    sep = "|---|" + "---:|" * (len(datasets) * len(metrics))
    rows = ["| " + m + " | " + " | ".join(format_cell(by.get((m, d)), x) for d in datasets for x in metrics) + " |"
            for m in methods]
    text = [head, sep, *rows, "", f"Percent; {table_note(cells)}."]
    tests = significance_rows(cells, metrics)
    if tests:
        text += ["", significance_title(cells) + ":", "",
                 "| Method | Dataset | Seeds | " + " | ".join(f"p ({LABELS[m]})" for m in metrics) + " |",
                 "|---|---|---|" + "---:|" * len(metrics),
                 *("| " + " | ".join(row) + " |" for row in tests)]
    return "\n".join(text) + "\n"


def _latex(cells: list[Cell], metrics: tuple[str, ...]) -> str:
    methods, datasets, by = layout(cells)
    k = len(metrics)
    lines = [r"% needs \usepackage{booktabs}", r"\begin{tabular}{l" + ("c" * k) * len(datasets) + "}", r"\toprule",
             "Method & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_tex(d)}}}" for d in datasets) + r" \\",
             " & " + " & ".join(LABELS[m] for _ in datasets for m in metrics) + r" \\", r"\midrule"]
    for m in methods:
        lines.append(_tex(m) + " & " + " & ".join(format_cell(by.get((m, d)), x, r" $\pm$ ", r"$^\dagger$")
                                                   for d in datasets for x in metrics) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% percent; {table_note(cells)}"]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "|": r"\textbar{}"}


def _tex(s: str) -> str:
    """`s` as LaTeX text: every character LaTeX treats specially escaped."""
    return "".join(_TEX.get(ch, ch) for ch in s)
