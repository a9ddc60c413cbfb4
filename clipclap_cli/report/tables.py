"""Results tables like the paper's (methods x datasets: S, U, HM, ZSL), in every format of
`clipclap report`: markdown, LaTeX and HTML wide, CSV and JSON one row per cell.

The columns are metric_table's, in its order, in every format, after each dataset's number of
seeds n. What rests on too little is marked in every format: FEW (an interval over 2 seeds, a
paired test over 2 shared seeds), FLAT (a test where a row has no spread); the notes say what
the marks, and the tests, can and cannot tell (CSV: `ci95_few_seeds` and `NAME_p_caveat`). A metric a cell lacks (a
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
from clipclap_cli.report.seed_statistics import FEW_SEEDS, SIGNIFICANCE, TEST_NOTE

FORMATS = ("markdown", "latex", "html", "csv", "json")

EXTENSIONS = {".md": "markdown", ".markdown": "markdown", ".tex": "latex", ".latex": "latex", ".html": "html",
              ".htm": "html", ".csv": "csv", ".json": "json"}
"The format `report -o FILE` writes, by FILE's extension (any other extension: --format, else markdown)"

MISSING = "–"
"A wide table's mark for a cell, or a metric of it, that is not there"
SAME = "†"
"The mark of a value that does not differ significantly from the reference row's"
FEW = "‡"
"The mark of what rests on fewer than FEW_SEEDS seeds: an interval over 2 seeds, a test over 2 shared seeds"
FLAT = "§"
"The mark of a paired test where a row has no spread (the same value on every seed)"
LATEX_MARKS = {SAME: r"\dagger", FEW: r"\ddagger", FLAT: r"\S"}


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


def test_marks(cell: Cell, metric: str) -> str:
    """The marks of `cell`'s paired test of `metric`: SAME (no significant difference), FEW (over
    fewer than FEW_SEEDS shared seeds), FLAT (a row without spread); '' without a test."""
    against = cell.against
    if metric not in against.get("p", {}):
        return ""
    return ((SAME if not against["differs"][metric] else "") + (FEW if against.get("few_seeds") else "")
            + (FLAT if against.get("no_spread", {}).get(metric) else ""))


def latex_marks(marks: str) -> str:
    return f"$^{{{''.join(LATEX_MARKS[m] for m in marks)}}}$" if marks else ""


def format_cell(cell: Cell | None, metric: str, pm: str = " ± ", latex: bool = False) -> str:
    """One table entry: 'mean ± std' (the mean alone for one seed) and the marks of its paired test
    (`test_marks`, as LaTeX superscripts with `latex`); MISSING where the cell or its metric is
    missing."""
    if cell is None or metric not in cell.mean:
        return MISSING
    marks = test_marks(cell, metric)
    marks = latex_marks(marks) if latex else marks
    if cell.n <= 1:
        return f"{cell.mean[metric]:.2f}{marks}"
    return f"{cell.mean[metric]:.2f}{pm}{cell.std[metric]:.2f}{marks}"


def format_n(cell: Cell | None) -> str:
    """A cell's number of seeds; MISSING for a published result (the paper's, no seeds here) or no cell."""
    return str(cell.n) if cell is not None and cell.n else MISSING


def format_interval(cell: Cell, metric: str) -> str:
    """A cell's 95 % interval of `metric` as 'low–high', FEW after it when it rests on 2 seeds."""
    ci = cell.ci95.get(metric)
    if ci is None:
        return MISSING
    return f"{ci[0]:.2f}–{ci[1]:.2f}" + (FEW if cell.ci95_few_seeds else "")


def table_note(cells: list[Cell]) -> str:
    """What the table's numbers are: the caption every wide format prints under it."""
    counts = sorted({c.n for c in cells if c.n})
    note = ("one seed per entry" if counts == [1] else f"mean ± std over {counts[0]} seeds" if len(counts) == 1
            else "mean ± std over each entry's n seeds (the mean alone where n = 1)")
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
    return note + marks_note(cells)


def marks_note(cells: list[Cell]) -> str:
    """What the marks FEW and FLAT mean, where the table uses them ('' where it does not)."""
    note = ""
    if any(c.ci95_few_seeds for c in cells) or any(c.against.get("few_seeds") and c.against["p"] for c in cells):
        note += (f"; {FEW} rests on fewer than {FEW_SEEDS} seeds: an interval over 2 seeds (t quantile 12.7) or a "
                 "test over 2 shared seeds (1 degree of freedom) is a hint, not evidence")
    flat = [rows for c in cells for rows in c.against.get("no_spread", {}).values()]
    if flat:
        note += (f"; {FLAT} a row has the same value on every seed (no spread, e.g. a training-free head): its "
                 "test only asks whether the other row's seeds lie around that one value")
    if any(len(rows) == 2 for rows in flat):
        note += (", and where neither row varies it tells nothing (p is 0 where they differ, 1 where they are "
                 "equal)")
    return note


def format_p(p: float) -> str:
    """A p-value as people read it: three decimals, or scientific notation below 0.001."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def significance_rows(cells: list[Cell], metrics: tuple[str, ...]) -> list[list[str]]:
    """The paired tests as table rows: method, dataset, the seeds both rows have, and per metric
    the p-value with its marks (`test_marks`; MISSING where there is no test of that metric)."""
    rows = []
    for c in cells:
        p = c.against.get("p")
        if p:
            rows.append([c.method, c.dataset, " ".join(map(str, c.against["shared_seeds"]))]
                        + [format_p(p[m]) + test_marks(c, m) if m in p else MISSING for m in metrics])
    return rows


def significance_title(cells: list[Cell]) -> str:
    reference = next(c.against["method"] for c in cells if c.against.get("p"))
    return (f"Paired t-tests against {reference}: two-sided p-values over the seeds both rows have "
            f"({SAME}: p >= {SIGNIFICANCE}, no significant difference)")


def significance_note(cells: list[Cell]) -> str:
    """Under the paired tests: what they can and cannot tell, and the marks they carry."""
    return TEST_NOTE[0].upper() + TEST_NOTE[1:] + marks_note([c for c in cells if c.against.get("p")]) + "."


def interval_rows(cells: list[Cell], metrics: tuple[str, ...]) -> list[list[str]]:
    """The 95 % intervals as table rows: method, dataset, n and per metric 'low–high' (FEW-marked
    over 2 seeds); only the cells with two seeds or more."""
    return [[c.method, c.dataset, str(c.n)] + [format_interval(c, m) for m in metrics] for c in cells if c.ci95]


INTERVAL_TITLE = ("95 % confidence intervals of the means: Student's t over each row's seeds (scipy.stats.t), "
                  "cut to 0–100, the metrics' range")


def render(cells: list[Cell], fmt: str, metrics: tuple[str, ...] = METRICS) -> str:
    """The table in one of FORMATS: markdown, latex and html wide (methods x datasets, the
    `metrics` columns in METRICS order in each), csv and json one row per cell with every metric,
    its 95 % interval and p-value. Markdown and HTML add the paired tests as a second table."""
    check_format(fmt)
    metrics = tuple(m for m in METRICS if m in metrics)  # one column order in every format
    if fmt == "json":
        return json_text([c.as_json() for c in cells], what="the report")
    if fmt == "csv":
        return _csv(cells)
    if fmt == "html":
        from clipclap_cli.report.html_page import page

        return page(cells, metrics)
    return _markdown(cells, metrics) if fmt == "markdown" else _latex(cells, metrics)


def _csv(cells: list[Cell]) -> str:
    """One row per cell: every metric's CSV_STATS columns, empty where the cell has no value; then
    whether its intervals rest on fewer than FEW_SEEDS seeds, and per metric what its paired test
    cannot tell (`seed_statistics.test_caveat`, empty where nothing is to be said)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "dataset", "n", "seeds", "against", "shared_seeds"]
               + [f"{m}_{s}" for m in METRICS for s in CSV_STATS]
               + ["ci95_few_seeds"] + [f"{m}_p_caveat" for m in METRICS])
    for c in cells:
        row = [c.method, c.dataset, c.n, " ".join(map(str, c.seeds)), c.against.get("method", ""),
               " ".join(map(str, c.against.get("shared_seeds", [])))]
        for m in METRICS:
            ci, p = c.ci95.get(m), c.against.get("p", {}).get(m)
            differs = c.against.get("differs", {}).get(m)
            row += [f"{c.mean[m]:.4f}" if m in c.mean else "", f"{c.std[m]:.4f}" if m in c.std else "",
                    f"{ci[0]:.4f}" if ci else "", f"{ci[1]:.4f}" if ci else "", f"{p:.4g}" if p is not None else "",
                    "" if differs is None else str(differs).lower()]
        row += [str(c.ci95_few_seeds).lower() if c.ci95 else ""]
        row += [c.against.get("caveats", {}).get(m, "") for m in METRICS]
        w.writerow(row)
    return buf.getvalue()


def _markdown(cells: list[Cell], metrics: tuple[str, ...]) -> str:
    methods, datasets, by = layout(cells)
    head = "| Method | " + " | ".join(f"{d} {label}" for d in datasets for label in ("n", *map(LABELS.get, metrics)))
    sep = "|---|" + "---:|" * (len(datasets) * (len(metrics) + 1))
    rows = ["| " + m + " | " + " | ".join(x for d in datasets for x in (
        format_n(by.get((m, d))), *(format_cell(by.get((m, d)), x) for x in metrics))) + " |" for m in methods]
    text = [head + " |", sep, *rows, "", f"Percent; {table_note(cells)}."]
    intervals = interval_rows(cells, metrics)
    if intervals:
        text += ["", INTERVAL_TITLE + (f" ({FEW}: over 2 seeds)" if any(c.ci95_few_seeds for c in cells) else "")
                 + ":", "",
                 "| Method | Dataset | n | " + " | ".join(f"95 % CI ({LABELS[m]})" for m in metrics) + " |",
                 "|---|---|---:|" + "---:|" * len(metrics),
                 *("| " + " | ".join(row) + " |" for row in intervals)]
    tests = significance_rows(cells, metrics)
    if tests:
        text += ["", significance_title(cells) + ":", "",
                 "| Method | Dataset | Seeds | " + " | ".join(f"p ({LABELS[m]})" for m in metrics) + " |",
                 "|---|---|---|" + "---:|" * len(metrics),
                 *("| " + " | ".join(row) + " |" for row in tests),
                 "", significance_note(cells)]
    return "\n".join(text) + "\n"


def _latex(cells: list[Cell], metrics: tuple[str, ...]) -> str:
    methods, datasets, by = layout(cells)
    k = len(metrics) + 1
    lines = [r"% needs \usepackage{booktabs}", r"\begin{tabular}{l" + ("r" + "c" * (k - 1)) * len(datasets) + "}",
             r"\toprule",
             "Method & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_tex(d)}}}" for d in datasets) + r" \\",
             " & " + " & ".join(label for _ in datasets for label in ("$n$", *map(LABELS.get, metrics))) + r" \\",
             r"\midrule"]
    for m in methods:
        lines.append(_tex(m) + " & " + " & ".join(x for d in datasets for x in (
            format_n(by.get((m, d))), *(format_cell(by.get((m, d)), x, r" $\pm$ ", latex=True) for x in metrics)))
            + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% percent; {table_note(cells)}"]
    if any(c.against.get("p") for c in cells):
        lines.append(f"% {significance_note(cells)}")
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "|": r"\textbar{}"}


def _tex(s: str) -> str:
    """`s` as LaTeX text: every character LaTeX treats specially escaped."""
    return "".join(_TEX.get(ch, ch) for ch in s)
