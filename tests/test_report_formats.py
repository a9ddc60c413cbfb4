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

from debian_tools import PDFLATEX, program
from test_metrics import _cell

NAME = "my_head & co <b>50% #1</b> {x}~^\\"


def _compared():
    from clipclap_cli.report.seed_statistics import compare

    cells = [_cell("clipclap", [1, 2, 3], [60.0, 61.0, 59.5]), _cell("zeroshot", [1, 2, 3], [30.0, 30.0, 30.0]),
             _cell(NAME, [1, 2, 3], [60.2, 60.0, 59.9])]
    return compare(cells, "clipclap")


def test_every_format_has_the_same_columns_in_the_same_order():
    from clipclap_cli.report.tables import render

    cells = _compared()
    md = render(cells, "markdown").splitlines()[0]
    assert md == "| Method | demo n | demo S | demo U | demo HM | demo ZSL |"
    latex = render(cells, "latex")
    assert " & $n$ & S & U & HM & ZSL \\\\" in latex
    page = render(cells, "html")
    assert re.findall(r"<th>(S|U|HM|ZSL)</th>", page.split("<h2>Paired tests")[0]) == ["S", "U", "HM", "ZSL"]
    header = next(csv.reader(io.StringIO(render(cells, "csv"))))
    assert [h[:-5] for h in header if h.endswith("_mean")] == ["seen", "unseen", "hm", "zsl"]
    # asked for in another order, or fewer: still METRICS' order
    assert render(cells, "markdown", ("zsl", "hm")).splitlines()[0] == "| Method | demo n | demo HM | demo ZSL |"


def test_markdown_prints_the_paired_tests_with_scipys_p_values():
    from clipclap_cli.report.tables import render

    md = render(_compared(), "markdown")
    table = md.split("Paired t-tests against clipclap")[1]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("| ")}
    p_zeroshot = stats.ttest_rel([30.0, 30.0, 30.0], [60.0, 61.0, 59.5]).pvalue
    p_twin = stats.ttest_rel([60.2, 60.0, 59.9], [60.0, 61.0, 59.5]).pvalue
    # HM column, differs; § zeroshot has the same value on every seed
    assert rows["zeroshot"][2] == "1 2 3" and rows["zeroshot"][5] == f"{p_zeroshot:.1e}§"
    assert rows[NAME][5] == f"{p_twin:.3f}†"  # does not differ: marked
    assert "clipclap" not in rows  # the reference is not tested against itself


def test_the_latex_table_balances_and_compiles(tmp_path):
    """The environments balance, every special character of the names is escaped, and pdflatex
    compiles the table inside a minimal document."""
    from clipclap_cli.report.tables import render

    latex = render(_compared(), "latex")
    body = "\n".join(line for line in latex.splitlines() if not line.startswith("%"))
    body = body.replace(r"\ifdim\width>\linewidth", "")  # the one comparison of widths
    assert body.count(r"\begin{tabular}") == body.count(r"\end{tabular}") > 1  # mean, and std under it
    assert body.count(r"\begin{table}") == body.count(r"\end{table}") == 1
    assert r"my\_head \& co \textless{}b\textgreater{}50\% \#1\textless{}/b\textgreater{} \{x\}" in body
    stripped = re.sub(r"\\[^a-zA-Z]", "", body)  # escaped characters out, then maths, then commands
    stripped = re.sub(r"\\[a-zA-Z]+", "", re.sub(r"\$[^$]*\$", "", stripped))
    assert not set("&%#_~^<>$") & set(stripped.replace(" & ", "")), stripped
    assert stripped.count("{") == stripped.count("}")
    doc = tmp_path / "table.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,graphicx}\n"
                   "\\begin{document}\n" + latex + "\\end{document}\n")
    done = subprocess.run([program(PDFLATEX), "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
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


# ---------------------------------------------------------------- a results.json from before a metric


def _copy_run(trained_run, to, edit_test=None, seed=None):
    """A copy of the trained run; `edit_test` edits its results.json's test figures by hand."""
    import json

    shutil.copytree(trained_run, to)
    results = json.loads((to / "results.json").read_text())
    if seed is not None:
        results["seed"] = seed  # another seed of the same settings: it joins the row
    if edit_test is not None:
        edit_test(results["test"])
    (to / "results.json").write_text(json.dumps(results))
    return to


def _cells(r) -> dict[str, dict]:
    import json

    assert r.exit_code == 0 and "Traceback" not in r.stderr, r
    return {c["method"]: c for c in json.loads(r.stdout)}


def test_a_results_json_without_a_metric_still_reports_with_that_cell_marked_missing(cli, trained_run, tmp_path):
    """A results.json written by hand without ZSL (as a run from before a metric was added would
    be): the run is in every format, its ZSL cell marked missing ('–', an empty CSV cell, no key
    in the JSON cell), and every other cell exactly as the complete run's."""
    pytest.importorskip("matplotlib")  # the figures are drawn too
    complete = tmp_path / "complete" / "seed42"
    shutil.copytree(trained_run, complete)
    older = _copy_run(trained_run, tmp_path / "older" / "seed42", lambda test: test.pop("zsl"))
    [full] = _cells(cli("report", complete, "--format", "json")).values()
    [lacking] = _cells(cli("report", older, "--format", "json")).values()
    assert lacking["n"] == 1 and "zsl" not in lacking["mean"] and "zsl" not in lacking["std"]
    assert "zsl" not in lacking["values"]
    for key in ("mean", "std", "values"):
        assert lacking[key] == {m: v for m, v in full[key].items() if m != "zsl"}, key

    md_full, md = cli("report", complete).stdout.splitlines(), cli("report", older).stdout.splitlines()
    assert md[0] == md_full[0] == "| Method | demo n | demo S | demo U | demo HM | demo ZSL |"
    cells_full, cells = md_full[2].split(" | "), md[2].split(" | ")
    assert cells[1:5] == cells_full[1:5] and cells[5] == "– |" and cells_full[5] != "– |"
    assert "–: ZSL not in the results.json of every run of the entry" in md[4]
    assert "not in the results.json" not in "\n".join(md_full)

    rows_full = next(csv.DictReader(io.StringIO(cli("report", complete, "--format", "csv").stdout)))
    row = next(csv.DictReader(io.StringIO(cli("report", older, "--format", "csv").stdout)))
    assert row["zsl_mean"] == row["zsl_std"] == "" and rows_full["zsl_mean"] != ""
    assert {k: v for k, v in row.items() if not k.startswith("zsl_")} == {
        k: v for k, v in rows_full.items() if not k.startswith("zsl_")}

    latex = cli("report", older, "--format", "latex").stdout
    assert next(line for line in latex.splitlines() if line.startswith("clipclap")).endswith(r" & -- \\")
    page = cli("report", older, "--format", "html", "--plots", tmp_path / "plots")
    assert page.exit_code == 0 and "Traceback" not in page.stderr, page
    assert '<td class="num">–</td><td class="num">' in page.stdout  # the runs table: ZSL, then β*
    assert len(list((tmp_path / "plots").iterdir())) == 4


def test_a_metric_some_seeds_lack_is_missing_from_the_row_never_a_mean_over_fewer_seeds(cli, trained_run, tmp_path):
    """Two seeds of one row, one from before HM was written: the row counts both seeds for S, U
    and ZSL, and its HM is missing (not one seed's HM shown as the row's), in the table and the
    comparison figure alike."""
    pytest.importorskip("matplotlib")
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "a" / "seed42")
    _copy_run(trained_run, runs / "b" / "seed43", lambda test: test.pop("hm"), seed=43)
    [cell] = _cells(cli("report", runs, "--format", "json", "--plots", tmp_path / "plots")).values()
    assert cell["n"] == 2 and cell["seeds"] == [42, 43]
    assert sorted(cell["mean"]) == ["seen", "unseen", "zsl"] and "hm" not in cell["values"]
    assert sorted((tmp_path / "plots").iterdir())[0].name == "comparison.png"


@pytest.mark.parametrize(("edit", "says"), [
    (lambda test: test.update(zsl="n/a"), "results.json: test zsl is 'n/a', not a number"),
    (lambda test: test.update(zsl=float("inf")), "results.json: test zsl is inf, outside 0..1"),
    (lambda test: test.pop("seen"), "results.json: test seen is None, not a number"),  # HM needs S to be checked
    (lambda test: [test.pop(m) for m in ("seen", "unseen", "hm", "zsl")], "test has none of the metrics"),
])
def test_a_metric_that_is_there_but_wrong_still_leaves_the_run_out(cli, trained_run, tmp_path, edit, says):
    """Missing is marked; present but not a finite fraction (or HM without the S it follows
    from) is refused as before: no silent wrong number."""
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "good" / "seed42")
    bad = _copy_run(trained_run, runs / "damaged" / "seed43", edit, seed=43)
    r = cli("report", runs, "--format", "json")
    [cell] = _cells(r).values()
    assert cell["n"] == 1 and cell["runs"] == [str(runs / "good" / "seed42")]
    assert f"left out: {bad}: " in r.stderr and says in r.stderr, r.stderr
