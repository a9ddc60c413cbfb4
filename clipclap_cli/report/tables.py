"""Results tables like the paper's (methods x datasets: S, U, HM, ZSL), in every format of
`clipclap report`: markdown, LaTeX and HTML wide, CSV and JSON one row per cell.

The columns are metric_table's, in its order, in every format, after each dataset's number of
seeds n. What rests on too little is marked in every format: FEW (an interval over 2 seeds, a
paired test over 2 shared seeds), FLAT (a test where a row has no spread); the notes say what
the marks, and the tests, can and cannot tell (CSV: `ci95_few_seeds` and `NAME_p_caveat`). A metric a cell lacks (a
published result without S and U, runs written before the metric was computed) is marked: '–'
in the wide tables, an empty CSV cell, a key left out of the JSON cell's `mean` and `std`.

LaTeX is a table float to \\input into a paper (`_latex`): caption and label, short row names
with their settings and the notes in small type under the table, a width that fits the line.
`--layout paper` (`grouping.layout`) puts the wide tables' datasets in the paper's order, one n
per row and the published rows under a rule. No torch here: `clipclap report` stays quick.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from pathlib import Path

from clipclap_cli.errors import RunError
from clipclap_cli.files import json_text
from clipclap_cli.metric_table import CSV_STATS, LABELS, METRICS
from clipclap_cli.report.grouping import LAYOUTS, PAPER, Cell, layout, published_rows
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
DEFAULT_LABEL = "tab:clipclap-results"
"The LaTeX table's \\label unless --label names another"
LABEL_CHARACTERS = re.compile(r"[A-Za-z0-9:._/+-]+")
PUBLISHED_RULE = "Published"
"The paper layout's rule over the published rows: Markdown's label row, HTML's and LaTeX's rule"


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise RunError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def check_layout(fmt: str, layout_name: str, caption: str | None, label: str | None) -> None:
    """Refuse what a format would silently ignore: --layout paper outside the wide tables
    (Markdown, LaTeX, HTML), --caption and --label outside LaTeX; and a label LaTeX cannot hold."""
    if layout_name not in LAYOUTS:
        raise RunError(f"unknown layout {layout_name!r}; choose one of {', '.join(LAYOUTS)}")
    if layout_name != "default" and fmt not in ("markdown", "latex", "html"):
        raise RunError(f"--layout {layout_name} lays out the wide tables (markdown, latex, html); {fmt} has one "
                       "row per method and dataset; nothing was written")
    given = [name for name, value in (("--caption", caption), ("--label", label)) if value is not None]
    if given and fmt != "latex":
        raise RunError(f"{' and '.join(given)} set the LaTeX table's \\caption and \\label; the format is {fmt} "
                       "(--format latex, or -o FILE.tex); nothing was written")
    if label is not None and not LABEL_CHARACTERS.fullmatch(label):
        raise RunError(f"--label {label!r}: a LaTeX label here is letters, digits and : . _ / + - only "
                       f"(such as {DEFAULT_LABEL}); nothing was written")


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
        single = sorted({f"{c.method} (seed {c.seeds[0]})" for c in cells if c.n == 0 and len(c.seeds) == 1})
        if single:
            note += f"; {', '.join(single)}: one run, not a mean over seeds"
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


def render(cells: list[Cell], fmt: str, metrics: tuple[str, ...] = METRICS, layout_name: str = "default",
           caption: str | None = None, label: str | None = None) -> str:
    """The table in one of FORMATS: markdown, latex and html wide (methods x datasets, the
    `metrics` columns in METRICS order in each), csv and json one row per cell with every metric,
    its 95 % interval and p-value. Markdown and HTML add the paired tests as a second table.
    `layout_name` paper (the wide formats): the datasets in the paper's order, one n per row,
    the published rows under a rule (`grouping.layout`). LaTeX: a table float with `caption`
    and `label` (defaults: `default_caption`, DEFAULT_LABEL)."""
    check_format(fmt)
    check_layout(fmt, layout_name, caption, label)
    metrics = tuple(m for m in METRICS if m in metrics)  # one column order in every format
    paper = layout_name == "paper"
    if fmt == "json":
        return json_text([c.as_json() for c in cells], what="the report")
    if fmt == "csv":
        return _csv(cells)
    if fmt == "html":
        from clipclap_cli.report.html_page import page

        return page(cells, metrics, paper=paper)
    if fmt == "latex":
        return _latex(cells, metrics, paper, caption, label)
    return _markdown(cells, metrics, paper)


def row_n(method: str, datasets: list[str], by: dict) -> str:
    """The paper layout's one n of a row: its number of seeds where every column has the same,
    else each column's, in their order ('3/2/–')."""
    counts = [format_n(by.get((method, d))) for d in datasets]
    return counts[0] if len(set(counts)) == 1 else "/".join(counts)


def paper_note(methods: list[str], datasets: list[str], by: dict) -> str:
    """What the paper layout adds to the table's note ('' where nothing is to be said)."""
    if any("/" in row_n(m, datasets, by) for m in methods):
        return "; n: seeds per entry, one per dataset in the columns' order where they differ"
    return ""


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


def _md(text: str) -> str:
    """A Markdown table cell: a `|` would end the cell, a newline the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _markdown(cells: list[Cell], metrics: tuple[str, ...], paper: bool = False) -> str:
    methods, datasets, by = layout(cells, paper)
    labels = [LABELS[m] for m in metrics]
    published = published_rows(cells) if paper else set()
    if paper:
        head = "| Method | n | " + " | ".join(f"{_md(d)} {label}" for d in datasets for label in labels)
        sep = "|---|---:|" + "---:|" * (len(datasets) * len(metrics))
    else:
        head = "| Method | " + " | ".join(f"{_md(d)} {label}" for d in datasets for label in ("n", *labels))
        sep = "|---|" + "---:|" * (len(datasets) * (len(metrics) + 1))
    rows = []
    for m in methods:
        if m in published and m == next(x for x in methods if x in published):  # the published rows, under a rule
            rows.append(f"| **{PUBLISHED_RULE}** |" + " |" * (1 + len(datasets) * len(metrics)))
        if paper:
            values = [row_n(m, datasets, by), *(format_cell(by.get((m, d)), x) for d in datasets for x in metrics)]
        else:
            values = [x for d in datasets for x in (
                format_n(by.get((m, d))), *(format_cell(by.get((m, d)), x) for x in metrics))]
        rows.append("| " + _md(m) + " | " + " | ".join(values) + " |")
    note = table_note(cells) + (paper_note(methods, datasets, by) if paper else "")
    text = [head + " |", sep, *rows, "", f"Percent; {note}."]
    intervals = interval_rows(cells, metrics)
    if intervals:
        text += ["", INTERVAL_TITLE + (f" ({FEW}: over 2 seeds)" if any(c.ci95_few_seeds for c in cells) else "")
                 + ":", "",
                 "| Method | Dataset | n | " + " | ".join(f"95 % CI ({LABELS[m]})" for m in metrics) + " |",
                 "|---|---|---:|" + "---:|" * len(metrics),
                 *("| " + " | ".join(map(_md, row)) + " |" for row in intervals)]
    tests = significance_rows(cells, metrics)
    if tests:
        text += ["", significance_title(cells) + ":", "",
                 "| Method | Dataset | Seeds | " + " | ".join(f"p ({LABELS[m]})" for m in metrics) + " |",
                 "|---|---|---|" + "---:|" * len(metrics),
                 *("| " + " | ".join(map(_md, row)) + " |" for row in tests),
                 "", significance_note(cells)]
    return "\n".join(text) + "\n"


# ---------------------------------------------------------------- LaTeX

LATEX_HEADER = (
    r"% needs \usepackage{booktabs} and \usepackage{graphicx}; \input{} this file where the table goes.",
    r"% The table keeps its natural size where it fits \linewidth and is scaled down to it where it does not.",
    r"% A table of one dataset is a table float (one column of a two-column article); of several, a table*",
    r"% (both columns of a two-column article, the same as table in a one-column one).",
)
"The LaTeX file's first lines (comments: what to load, how it fits)"
SUPERSCRIPT = r"\textsuperscript"
"How a short row label carries its footnote letter"


def default_caption(datasets: list[str], metrics: tuple[str, ...]) -> str:
    labels = [LABELS[m] for m in metrics]
    listed = ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else labels[0]
    return f"GZSL test results (percent) on {', '.join(datasets)}: {listed}."


def short_labels(cells: list[Cell]) -> tuple[dict[str, str], list[str]]:
    """Each row's LaTeX label and the footnote of its settings: a row named 'HEAD (SETTINGS)'
    (or 'HEAD [SETTINGS]') is HEAD with a letter, its settings under the table ('a: epochs=3,
    batches-per-epoch=30'), so that the table fits the column; any other name is itself."""
    labels: dict[str, str] = {}
    notes: list[str] = []
    for method, head in dict.fromkeys((c.method, c.head) for c in cells):
        if method in labels:
            continue
        rest = method[len(head):].strip() if head and method.startswith(head + " ") else ""
        if not rest or rest == PAPER.strip() or rest[0] not in "([" or rest[-1] not in ")]":
            labels[method] = tex(method)
            continue
        settings = rest[1:-1] if rest.count("(") + rest.count("[") == 1 else rest
        letter = _letter(len(notes))
        labels[method] = f"{tex(head)}{SUPERSCRIPT}{{{letter}}}"
        notes.append(f"{SUPERSCRIPT}{{{letter}}}\\,{tex(settings, breaks=True)}")
    return labels, notes


def _letter(i: int) -> str:
    """a, b, ..., z, aa, ab, ...: the footnote letters."""
    return (_letter(i // 26 - 1) if i >= 26 else "") + chr(ord("a") + i % 26)


def latex_value(cell: Cell | None, metric: str) -> str:
    """One LaTeX table entry: the mean with the marks of its paired test as superscripts, and
    where n > 1 its std under it in smaller type (the column half as wide as 'mean ± std' on
    one line); '--' where the cell or its metric is missing."""
    if cell is None or metric not in cell.mean:
        return "--"
    mean = f"{cell.mean[metric]:.2f}{latex_marks(test_marks(cell, metric))}"
    if cell.n <= 1:
        return mean
    std = f"{{\\scriptsize$\\pm${cell.std[metric]:.2f}}}"
    return rf"\begin{{tabular}}[t]{{@{{}}c@{{}}}}{mean}\\[-2pt]{std}\end{{tabular}}"


def _latex(cells: list[Cell], metrics: tuple[str, ...], paper: bool = False, caption: str | None = None,
           label: str | None = None) -> str:
    """A table float to \\input (table for one dataset, table* spanning a two-column article's
    columns for several): caption and label, the tabular (booktabs; shrunk to \\linewidth only
    where it would not fit), and under it, in small type, the settings of the rows with a short
    label and the notes (what the numbers are, the marks, what the tests can tell)."""
    methods, datasets, by = layout(cells, paper)
    names, settings = short_labels(cells)
    published = published_rows(cells) if paper else set()
    per = len(metrics) + (0 if paper else 1)  # columns per dataset
    before = 2 if paper else 1  # Method (and the paper layout's n)
    spec = "@{}l" + ("r" if paper else "") + (("" if paper else "r") + "c" * len(metrics)) * len(datasets) + "@{}"
    groups = " & ".join(rf"\multicolumn{{{per}}}{{c}}{{{tex(d)}}}" for d in datasets)
    rules = "".join(rf"\cmidrule(lr){{{before + 1 + i * per}-{before + (i + 1) * per}}}" for i in range(len(datasets)))
    sub = [LABELS[m] for m in metrics] if paper else ["$n$", *(LABELS[m] for m in metrics)]
    float_env = "table" if len(datasets) == 1 else "table*"  # several datasets: too wide for one column
    lines = [*LATEX_HEADER, rf"\begin{{{float_env}}}[tbp]", r"\centering",
             rf"\caption{{{tex(caption if caption is not None else default_caption(datasets, metrics))}}}",
             rf"\label{{{label or DEFAULT_LABEL}}}", r"\smallskip", r"\setlength{\tabcolsep}{3pt}",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{" + rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule",
             "Method" + (" & $n$" if paper else "") + " & " + groups + r" \\", rules,
             " & " * (before - 1) + " & " + " & ".join(x for _ in datasets for x in sub) + r" \\", r"\midrule"]
    for m in methods:
        if m in published and m == next(x for x in methods if x in published):
            lines.append(r"\midrule")  # the published rows, under a rule
        if paper:
            values = [tex(row_n(m, datasets, by)), *(latex_value(by.get((m, d)), x) for d in datasets for x in metrics)]
        else:
            values = [x for d in datasets for x in (tex(format_n(by.get((m, d)))),
                                                    *(latex_value(by.get((m, d)), x) for x in metrics))]
        lines.append(names[m] + " & " + " & ".join(values) + r" \\")
    note = "Percent; " + table_note(cells) + (paper_note(methods, datasets, by) if paper else "") + "."
    if any(c.against.get("p") for c in cells):
        note += " " + TEST_NOTE[0].upper() + TEST_NOTE[1:] + "."
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip", r"{\footnotesize\raggedright"]
    if settings:
        lines.append("; ".join(settings) + r".\par")
    lines += [_tex_note(note, names) + r"\par", "}", rf"\end{{{float_env}}}"]
    return "\n".join(lines) + "\n"


def _tex_note(note: str, names: dict[str, str]) -> str:
    """A note as LaTeX: the rows it names by their labels in the table (`short_labels`), 'p >= '
    as p ≥ and no line break inside 'p < 0.05'."""
    note = note.replace("p >= ", "p\u00a0≥\u00a0").replace("p < ", "p\u00a0<\u00a0")  # never 'p' at a line's end
    shortened = sorted((m for m in names if names[m] != tex(m)), key=len, reverse=True)
    if not shortened:
        return tex(note, breaks=True)
    parts = re.split("(" + "|".join(map(re.escape, shortened)) + ")", note)
    return "".join(names[part] if part in names else _tex_note(part, {}) for part in parts)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "|": r"\textbar{}", "\n": " ", "\r": " ", "\t": " ",
        # what the notes and marks hold, and other common signs, as LaTeX draws them in any font encoding
        "–": "--", "—": "---", "±": r"$\pm$", "†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$", "§": r"$^{\S}$",
        "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "β": r"$\beta$", "…": r"\dots{}", "°": r"$^{\circ}$",
        "‘": "`", "’": "'", "“": "``", "”": "''", "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "œ": r"\oe{}",
        "Œ": r"\OE{}", "ø": r"\o{}", "Ø": r"\O{}", "ł": r"\l{}", "Ł": r"\L{}", "ı": r"\i{}",
        "\u00a0": r"\nobreakspace{}"}
_ACCENTS = {"\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u", "\u0307": ".",
            "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0327": "c"}
"Combining accents (a letter's NFD form) as LaTeX's accent commands"
_BREAK_AFTER = frozenset("_/=")


def tex(s: str, breaks: bool = False) -> str:
    """`s` as LaTeX text that compiles in any article: every character LaTeX treats specially
    escaped, line breaks and tabs as spaces, other control characters dropped, no ligature
    made of a name's characters (-- !` ?`), accented letters as accent commands, the signs the notes use
    drawn by LaTeX, and any other character outside ASCII as '?' (no font is assumed to have
    it). `breaks`: a line may break after _ / = (long settings in a footnote)."""
    out = []
    for i, ch in enumerate(s):
        if ch in _TEX:
            piece = _TEX[ch]
        elif ch == "'" and (i == 0 or s[i - 1] in " ("):  # an opening quote: 'x' reads as `x'
            piece = "`"
        elif ch.isascii():
            ligature = ch in "-!?" and s[i + 1:i + 2] == ("-" if ch == "-" else "`")  # --, !` and ?` are ligatures
            piece = "" if not ch.isprintable() else ch + "{}" if ligature else ch
        else:
            piece = _accented(ch)
        out.append(piece + (r"\allowbreak{}" if breaks and ch in _BREAK_AFTER else ""))
    return "".join(out)


def _accented(ch: str) -> str:
    base, *marks = unicodedata.normalize("NFD", ch)
    if not base.isascii() or not base.isalpha() or any(m not in _ACCENTS for m in marks) or not marks:
        return "?" if unicodedata.category(ch)[0] != "C" else ""
    for m in marks:
        base = f"\\{_ACCENTS[m]}{{{base}}}"
    return base
