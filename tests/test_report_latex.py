"""`clipclap report --format latex` is ready to \\input (issue 43 item 4): a table float with a
caption and a label, short row names with their settings and the notes in small type under the
table (in the PDF, not % comments), every special character and line break of a name escaped,
and a width that fits the line of a one- and a two-column article. Each table is compiled by
pdflatex inside such an article, with text around it; an overfull box fails the test, and the
text of the PDF is read back to find the notes and the settings."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest

from debian_tools import PDFLATEX, program

FILLER = ("Generalised zero-shot learning classifies videos of the classes seen in training and of classes "
          "never seen, from their sound and frames. This paragraph stands in for an article's text. ") * 3
NASTY = "50% & co_#1 $x$ {y} ~z^ a\\b\nline two -- 'é'"
"Every character LaTeX treats specially, a line break, a ligature and an accented letter"


def _pdf_text(pdf: Path) -> str:
    """The text pdfTeX drew (uncompressed streams: strings of TJ and Tj), ligatures spelled out,
    only printable ASCII kept, without spaces and hyphens (TeX draws no spaces, and hyphenates)."""
    ligatures = {0o13: "ff", 0o14: "fi", 0o15: "fl", 0o16: "ffi", 0o17: "ffl"}
    raw = pdf.read_bytes().decode("latin-1")
    strings = []
    for block in re.findall(r"\bBT\b(.*?)\bET\b", raw, re.S):  # the text objects of the pages
        for array, single in re.findall(r"\[([^\[\]]*)\]\s*TJ|\(((?:\\.|[^\\)])*)\)\s*Tj", block):
            strings += re.findall(r"\(((?:\\.|[^\\)])*)\)", array) if array else [single]
    text = []
    for s in strings:
        s = re.sub(r"\\([0-7]{1,3})", lambda m: chr(int(m.group(1), 8)), s)
        s = re.sub(r"\\(.)", r"\1", s)
        text.append("".join(ligatures.get(ord(c), c if 32 < ord(c) < 127 else "") for c in s))
    return _plain("".join(text))


def _plain(s: str) -> str:
    return re.sub(r"[\s-]", "", s)


def _compile(folder: Path, table: str, twocolumn: bool) -> str:
    """`table` \\input into an article (two-column or not) with text around it: pdflatex must
    succeed without an overfull box; the PDF's text."""
    pdflatex = program(PDFLATEX)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.tex").write_text(table, encoding="utf-8")
    (folder / "doc.tex").write_text(
        "\\pdfcompresslevel=0 \\pdfobjcompresslevel=0\n"
        f"\\documentclass{'[twocolumn]' if twocolumn else ''}{{article}}\n"
        "\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
        f"{FILLER}\n\n\\input{{table}}\n\n{FILLER}\n\n{FILLER}\n\\end{{document}}\n", encoding="utf-8")
    done = subprocess.run([pdflatex, "-halt-on-error", "-interaction=nonstopmode", "doc.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    log = (folder / "doc.log").read_text(encoding="latin-1")
    assert done.returncode == 0, done.stdout[-3000:]
    overfull = [line for line in log.splitlines() if line.startswith("Overfull \\hbox")]
    assert overfull == [], (overfull, table)
    assert "Float too large" not in log
    return _pdf_text(folder / "doc.pdf")


def _results(run: Path) -> dict[str, float]:
    return json.loads((run / "results.json").read_text())["test"]


def _copy(trained_run: Path, to: Path, seed: int, head: str | None = None, test: tuple | None = None) -> Path:
    """The trained run's results and config as seed `seed`; `head` renames its head (another row),
    `test` (S, U, ZSL percent) sets its test figures by hand, HM following from S and U."""
    to.mkdir(parents=True)
    results = json.loads((trained_run / "results.json").read_text())
    results["seed"] = seed
    if test is not None:
        s, u, z = test
        results["test"].update(seen=s / 100, unseen=u / 100, hm=2 * s * u / (s + u) / 100, zsl=z / 100)
    (to / "results.json").write_text(json.dumps(results))
    config = json.loads((trained_run / "config.json").read_text())
    config["spec"]["train"]["seed"] = seed
    if head is not None:
        config["spec"]["head"] = head
    (to / "config.json").write_text(json.dumps(config))
    return to


@pytest.fixture
def two_rows(trained_run, tmp_path):
    """clipclap seeds 42 (the trained run's results) and 43 (S, U, ZSL written by hand), and a
    zeroshot row of the same seeds written by hand."""
    runs = tmp_path / "runs"
    _copy(trained_run, runs / "clipclap" / "seed42", 42)
    _copy(trained_run, runs / "clipclap" / "seed43", 43, test=(30.0, 12.5, 20.0))
    _copy(trained_run, runs / "zeroshot" / "seed42", 42, "zeroshot", (20.0, 30.0, 60.0))
    _copy(trained_run, runs / "zeroshot" / "seed43", 43, "zeroshot", (22.0, 31.0, 58.0))
    return runs


@pytest.mark.parametrize("layout", ["default", "paper"])
def test_a_real_report_compiles_in_one_and_two_column_articles_with_its_notes_in_the_pdf(cli, two_rows, tmp_path,
                                                                                        layout):
    r = cli("report", two_rows, "--format", "latex", "--layout", layout)
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r
    latex = r.stdout
    lines = latex.splitlines()
    assert r"\begin{table}[tbp]" in lines and r"\end{table}" in lines  # one dataset: one column
    assert r"\caption{GZSL test results (percent) on demo: S, U, HM and ZSL.}" in lines
    assert r"\label{tab:clipclap-results}" in lines
    assert lines[0].startswith(r"% needs \usepackage{booktabs} and \usepackage{graphicx}")
    # short labels, the settings under the table
    rows = {line.split(" & ")[0]: line for line in lines if line.startswith(("clipclap", "zeroshot"))}
    assert list(rows) == [r"clipclap\textsuperscript{a}", r"zeroshot\textsuperscript{b}"]
    seeds = sorted((two_rows / "clipclap").iterdir())
    clipclap = [_results(run) for run in seeds]
    for i, metric in enumerate(("seen", "unseen", "hm", "zsl")):  # the row's numbers, from the results by numpy
        values = [100 * r[metric] for r in clipclap]
        entry = rows[r"clipclap\textsuperscript{a}"].split(" & ")[2 + i]
        assert re.findall(r"\d+\.\d\d", entry) == [f"{np.mean(values):.2f}", f"{np.std(values, ddof=1):.2f}"], entry
    for twocolumn in (False, True):
        text = _compile(tmp_path / f"{layout}-{twocolumn}", latex, twocolumn)
        assert _plain("Table 1: GZSL test results (percent) on demo") in text
        assert _plain("aepochs=1, batches-per-epoch=2; bepochs=1, batches-per-epoch=2.") in text
        assert _plain("Percent; mean") in text and _plain("over 2 seeds") in text  # the notes, in the PDF
        assert _plain("rests on fewer than 3 seeds") in text
        assert _plain("cannot tell whether the difference holds on other data") in text
        assert _plain("clipclapa") in text and "clipclap(epochs" not in text  # the short label in the notes too
        assert _plain(f"{np.mean([100 * r['hm'] for r in clipclap]):.2f}") in text


def _nasty_cells():
    from clipclap_cli.report.grouping import PAPER, Cell
    from clipclap_cli.report.seed_statistics import compare, confidence_interval

    def cell(method, head, dataset, values, n=3):
        seeds = list(range(1, n + 1))
        per = {m: {str(s): v + i for i, s in enumerate(seeds)} for m, v in
               zip(("seen", "unseen", "hm", "zsl"), values, strict=True)}
        return Cell(method, dataset, n, {m: statistics.fmean(v.values()) for m, v in per.items()},
                    {m: statistics.stdev(v.values()) for m, v in per.items()}, seeds, head=head, values=per,
                    ci95={m: confidence_interval(list(v.values())) for m, v in per.items()})

    cells = [cell(f"clipclap ({NASTY})", "clipclap", "ucf", (60.0, 40.0, 48.0, 45.0)),
             cell(NASTY, NASTY, "ucf", (50.0, 30.0, 37.5, 40.0)),
             cell(NASTY, NASTY, f"vggsound {NASTY}", (20.0, 10.0, 13.3, 11.0), n=2),
             cell(f"clipclap ({NASTY})", "clipclap", f"vggsound {NASTY}", (30.0, 11.0, 16.1, 12.0), n=2)]
    cells = compare(cells, "clipclap", lambda *a: None)
    return [*cells, Cell("clipclap" + PAPER, "ucf", 0, {"hm": 55.97, "zsl": 46.96}, {}, head="clipclap")]


@pytest.mark.parametrize("layout", ["default", "paper"])
def test_names_with_every_special_character_and_a_line_break_compile_and_read_back(tmp_path, layout):
    from clipclap_cli.report.tables import render

    latex = render(_nasty_cells(), "latex", layout_name=layout, caption=f"Caption {NASTY}")
    assert "line two" in latex and "\nline two" not in latex  # the line break is a space
    assert r"50\% \& co\_\#1 \$x\$ \{y\} \textasciitilde{}z\textasciicircum{} a\textbackslash{}b" in latex
    assert r"-{}- `\'{e}'" in latex  # no en dash made of a name's --, the accent as LaTeX's
    for twocolumn in (False, True):
        text = _compile(tmp_path / f"{layout}-{twocolumn}", latex, twocolumn)
        assert _plain("Caption 50% & co") in text and _plain("line two") in text
        assert _plain("#1 $x$") in text


def test_caption_and_label_are_set_by_options_and_refused_where_they_would_be_lost(cli, trained_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "a" / "seed42")
    r = cli("report", runs, "-f", "latex", "--caption", "Ours & theirs, 100%", "--label", "tab:main_results")
    assert r.exit_code == 0, r
    assert r"\caption{Ours \& theirs, 100\%}" in r.stdout and r"\label{tab:main_results}" in r.stdout
    target = tmp_path / "table.md"
    r = cli("report", runs, "--caption", "Mine", "-o", target)
    assert r.exit_code == 1 and not target.exists()
    assert "--caption set the LaTeX table's \\caption and \\label; the format is markdown" in r.stderr, r.stderr
    target = tmp_path / "table.tex"
    r = cli("report", runs, "--label", "tab:a b}", "-o", target)
    assert r.exit_code == 1 and not target.exists() and "--label 'tab:a b}'" in r.stderr, r.stderr


def test_the_table_keeps_its_size_where_it_fits_and_is_scaled_to_the_line_where_it_does_not(tmp_path):
    """The width TeX measures: one dataset fits a two-column article's column at its natural
    size; four datasets side by side are wider than a one-column article's text, and scaled to it."""
    from clipclap_cli.report.tables import render

    cells = _nasty_cells()
    narrow = render([c for c in cells if c.dataset == "ucf" and c.method != NASTY], "latex")
    wide = render(cells + [c.__class__(**(c.__dict__ | {"dataset": d})) for c in cells[:2] for d in ("x", "y")],
                  "latex", layout_name="paper")
    widths = {}
    for name, table in (("narrow", narrow), ("wide", wide)):
        measured = table.replace(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{",
                                 r"\sbox0{").replace(r"\end{tabular}}", r"\end{tabular}}\typeout{WIDTH \the\wd0}")
        folder = tmp_path / name
        folder.mkdir()
        (folder / "t.tex").write_text(measured)
        (folder / "doc.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs,graphicx}\n"
                                        "\\begin{document}\n\\typeout{COLUMN \\the\\columnwidth}\n\\input{t}\n"
                                        "\\end{document}\n")
        out = subprocess.run([program(PDFLATEX), "-interaction=nonstopmode", "doc.tex"], cwd=folder,
                             capture_output=True, text=True, timeout=120).stdout
        widths[name] = float(re.search(r"WIDTH ([\d.]+)pt", out).group(1))
        column = float(re.search(r"COLUMN ([\d.]+)pt", out).group(1))
    assert widths["narrow"] < column  # natural size, no scaling needed in one column
    assert widths["wide"] > 2 * column  # wider than the text: the \resizebox scales it (no overfull box above)


@pytest.mark.parametrize("layout", ["default", "paper"])
def test_markdown_keeps_every_row_to_its_columns_whatever_the_names(layout):
    """A `|` in a name would end its cell and a newline its row: every row of every Markdown
    table has as many cells as its header, and each name reads back whole, on one line."""
    from clipclap_cli.report.tables import render

    text = render(_nasty_cells(), "markdown", layout_name=layout)
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]
    assert len(tables) >= 2  # the results, their intervals (and the tests, with their notes)

    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]

    for table in tables:
        widths = {len(cells(line)) for line in table}
        assert len(widths) == 1, table
    flat = " ".join(NASTY.split())
    assert any(cells(line)[0] == flat for table in tables for line in table[2:])
