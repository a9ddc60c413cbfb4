"""`clipclap report` formats: one column order everywhere, the paired tests printed, a LaTeX
table that compiles, and an HTML report that is a standalone page."""

from __future__ import annotations

import csv
import html
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from scipy import stats

from test_metrics import _cell

NAME = "my_head & co <b>50% #1</b> {x}~^\\"


def _compared():
    from clipclap_cli.report.tables import compare

    cells = [_cell("clipclap", [1, 2, 3], [60.0, 61.0, 59.5]), _cell("zeroshot", [1, 2, 3], [30.0, 30.0, 30.0]),
             _cell(NAME, [1, 2, 3], [60.2, 60.0, 59.9])]
    return compare(cells, "clipclap")


def test_every_format_has_the_same_columns_in_the_same_order():
    from clipclap_cli.report.tables import render

    cells = _compared()
    md = render(cells, "markdown").splitlines()[0]
    assert md == "| Method | demo S | demo U | demo HM | demo ZSL |"
    latex = render(cells, "latex")
    assert " & S & U & HM & ZSL \\\\" in latex
    page = render(cells, "html")
    assert re.findall(r"<th>(S|U|HM|ZSL)</th>", page.split("<h2>Paired tests")[0]) == ["S", "U", "HM", "ZSL"]
    header = next(csv.reader(io.StringIO(render(cells, "csv"))))
    assert [h[:-5] for h in header if h.endswith("_mean")] == ["seen", "unseen", "hm", "zsl"]
    # asked for in another order, or fewer: still METRICS' order
    assert render(cells, "markdown", ("zsl", "hm")).splitlines()[0] == "| Method | demo HM | demo ZSL |"


def test_markdown_prints_the_paired_tests_with_scipys_p_values():
    from clipclap_cli.report.tables import render

    md = render(_compared(), "markdown")
    table = md.split("Paired t-tests against clipclap")[1]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("| ")}
    p_zeroshot = stats.ttest_rel([30.0, 30.0, 30.0], [60.0, 61.0, 59.5]).pvalue
    p_twin = stats.ttest_rel([60.2, 60.0, 59.9], [60.0, 61.0, 59.5]).pvalue
    assert rows["zeroshot"][2] == "1 2 3" and rows["zeroshot"][5] == f"{p_zeroshot:.1e}"  # HM column, differs
    assert rows[NAME][5] == f"{p_twin:.3f}†"  # does not differ: marked
    assert "clipclap" not in rows  # the reference is not tested against itself


def test_the_latex_table_compiles_or_at_least_balances(tmp_path):
    """With a TeX engine (pdflatex) the table is compiled inside a minimal document; without one
    the environments must balance and every special character of the names be escaped."""
    from clipclap_cli.report.tables import render

    latex = render(_compared(), "latex")
    body = "\n".join(line for line in latex.splitlines() if not line.startswith("%"))
    assert body.count(r"\begin{tabular}") == body.count(r"\end{tabular}") == 1
    assert r"my\_head \& co \textless{}b\textgreater{}50\% \#1\textless{}/b\textgreater{} \{x\}" in body
    stripped = re.sub(r"\\[^a-zA-Z]", "", body)  # escaped characters out, then maths, then commands
    stripped = re.sub(r"\\[a-zA-Z]+", "", re.sub(r"\$[^$]*\$", "", stripped))
    assert not set("&%#_~^<>$") & set(stripped.replace(" & ", "")), stripped
    assert stripped.count("{") == stripped.count("}")
    if shutil.which("pdflatex"):
        doc = tmp_path / "table.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"
                       "\\begin{document}\n" + latex + "\\end{document}\n")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]
        assert (tmp_path / "table.pdf").stat().st_size > 1000


class _Page(HTMLParser):
    """What a browser would fetch, and the page's images, captions and headings."""

    def __init__(self):
        super().__init__()
        self.fetched, self.images, self.captions, self.headings, self._open = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.fetched.append(attrs[key])
        if tag == "img":
            self.images.append(attrs)
        if tag in ("script", "link", "iframe", "object"):
            self.fetched.append(tag)
        self._open = tag

    def handle_data(self, data):
        if self._open == "figcaption":
            self.captions.append(data)
        if self._open == "h2":
            self.headings.append(data)

    def handle_endtag(self, tag):
        self._open = None


def test_the_html_report_is_one_standalone_page_with_figures_and_settings(cli, trained_run, tmp_path):
    """`report --format html -o FILE`: a whole page (doctype to /html) that fetches nothing, with
    the table's columns, the figures embedded and captioned by their titles, and the run's settings."""
    pytest.importorskip("matplotlib")  # the plots extra; `make test` installs it
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "a" / "seed42")
    page_file = tmp_path / "report.html"
    r = cli("report", runs, "--format", "html", "-o", page_file)
    assert r.exit_code == 0, r
    text = page_file.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    parser = _Page()
    parser.feed(text)
    assert parser.fetched == []
    assert len(parser.images) == 4  # the comparison, and the run's bias curve, per-class accuracy, training curves
    assert all(img["src"].startswith("data:image/png;base64,") for img in parser.images)
    assert any("Test accuracy against the calibration bias β" in c for c in parser.captions)
    assert any("Training curves" in c for c in parser.captions)
    assert parser.headings == ["Results", "Figures", "Runs"]
    assert '"batches_per_epoch": 2' in html.unescape(text)  # the run's settings
    assert re.findall(r"<th>(S|U|HM|ZSL)</th>", text)[:4] == ["S", "U", "HM", "ZSL"]
