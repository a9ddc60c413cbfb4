"""What `report` and `evaluate` write can be trusted (issue 39, point 5): runs of different data
are never seeds of one row, a damaged run is left out of the table and the figures alike in one
line, outputs land whole or not at all and say what they replaced, `evaluate -o` writes the
results, and no JSON they write holds NaN or infinity."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest
from scipy import stats

from conftest import made_once
from helpers import one_error_line as _one_error_line
from helpers import tree_digest

TINY = ("--epochs", "1", "--batches-per-epoch", "2")
METRICS = ("seen", "unseen", "hm", "zsl")


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _digest(run: Path) -> str:
    return json.loads((run / "config.json").read_text())["data_digest"]


def _percent(runs: list[Path], metric: str) -> list[float]:
    return [100 * _results(r)["test"][metric] for r in runs]


# ---------------------------------------------------------------- runs of different data

#: the tests that read `two_data` run on one worker, one after another: the first trains the runs,
#: the others read them (on two workers at once, one would wait for the other to train them)
TWO_DATA = pytest.mark.xdist_group("two-data")


@pytest.fixture(scope="module")
def two_data(tmp_path_factory, demo_store):
    """clipclap seeds 1 and 2 on the demo store (A) and on a demo of another seed (B, other
    data); seed 3 on a copy of A (the same data in another place); zeroshot seeds 1 and 2 on B.
    Trained once per session (the tests that read them may run on different xdist workers)."""
    from clipclap_cli.cli import run
    from clipclap_cli.plugins.manager import make_plugin_manager

    def cli(*args):
        assert run([str(a) for a in args], make_plugin_manager(entrypoints=False)) == 0, args

    def make(root: Path) -> None:
        other, copy = root / "other.zarr", root / "copy.zarr"
        shutil.copytree(demo_store, copy)
        cli("demo", "--no-train", "--seed", "9", "--store", other)
        cli("train", "demo", "--store", demo_store, "--runs-dir", root / "a", "--seeds", "2", "--seed", "1", *TINY)
        cli("train", "demo", "--store", other, "--runs-dir", root / "b", "--seeds", "2", "--seed", "1", *TINY)
        cli("train", "demo", "--store", copy, "--runs-dir", root / "copy", "--seed", "3", *TINY)
        cli("train", "demo", "--store", other, "--runs-dir", root / "b", "--head", "zeroshot", "--seeds", "2",
            "--seed", "1")

    root = made_once(tmp_path_factory, "two-data", make)
    runs = {name: sorted(p.parent for p in (root / name).rglob("results.json")) for name in ("a", "b", "copy")}
    a = runs["a"]
    b = [p for p in runs["b"] if "zeroshot" not in str(p)]
    zeroshot = [p for p in runs["b"] if "zeroshot" in str(p)]
    assert len(a) == len(b) == len(zeroshot) == 2 and len(runs["copy"]) == 1
    return root, a, b, zeroshot, runs["copy"][0]


@TWO_DATA
def test_runs_of_different_data_are_never_seeds_of_one_row(cli, two_data):
    """The same head and seeds trained on two demo stores of different data: two columns of two
    seeds each, labelled by their data digests, in every format; never one mean over 4 seeds."""
    _, a, b, _, _ = two_data
    da, db = _digest(a[0]), _digest(b[0])
    assert da != db and {_digest(p) for p in a} == {da} and {_digest(p) for p in b} == {db}
    col_a, col_b = f"demo [data {da[:8]}]", f"demo [data {db[:8]}]"
    r = cli("report", *a, *b, "--format", "json")
    assert r.exit_code == 0, r
    cells = {c["dataset"]: c for c in json.loads(r.stdout)}
    assert set(cells) == {col_a, col_b}
    for column, runs, digest in ((col_a, a, da), (col_b, b, db)):
        cell = cells[column]
        assert cell["n"] == 2 and cell["seeds"] == [1, 2] and sorted(cell["runs"]) == sorted(map(str, runs))
        assert cell["data"] == f"data {digest}" and cell["data_tag"] == f"data {digest[:8]}"
        for m in METRICS:
            assert cell["mean"][m] == pytest.approx(statistics.fmean(_percent(runs, m)))
            assert cell["std"][m] == pytest.approx(statistics.stdev(_percent(runs, m)))
    assert "runs trained on 2 different data" in r.stderr and col_a in r.stderr and col_b in r.stderr, r
    md = cli("report", *a, *b).stdout
    assert "over 4 seeds" not in md and "mean ± std over 2 seeds" in md
    assert f"| {col_a} HM |" in md and f"| {col_b} HM |" in md
    assert "never averaged" in md
    rows = list(csv.DictReader(io.StringIO(cli("report", *a, *b, "--format", "csv").stdout)))
    assert sorted((row["dataset"], row["n"]) for row in rows) == sorted([(col_a, "2"), (col_b, "2")])
    latex = cli("report", *a, *b, "--format", "latex").stdout
    assert col_a in latex and col_b in latex and "never averaged" in latex
    page = cli("report", *a, *b, "--format", "html").stdout
    assert page.count(col_a) >= 2 and page.count(col_b) >= 2  # the results table and the runs table


@TWO_DATA
def test_the_same_data_in_another_store_is_one_row(cli, two_data):
    """The digest is of every number a run read: a copy of the store holds the same data, so its
    run is a third seed of the same row (and the report names both stores)."""
    root, a, _, _, copy = two_data
    assert _digest(copy) == _digest(a[0])
    r = cli("report", *a, copy, "--format", "json")
    assert r.exit_code == 0, r
    [cell] = json.loads(r.stdout)
    assert cell["dataset"] == "demo" and cell["n"] == 3 and cell["seeds"] == [1, 2, 3] and not cell["data_tag"]
    assert cell["mean"]["hm"] == pytest.approx(statistics.fmean(_percent([*a, copy], "hm")))
    assert len(cell["stores"]) == 2 and str((root / "copy.zarr").resolve()) in cell["stores"]
    assert "different data" not in r.stderr


@TWO_DATA
def test_paired_tests_compare_runs_of_the_same_data_only(cli, two_data):
    """zeroshot on B is tested against clipclap on B, paired by seed, never against A's rows."""
    _, a, b, zeroshot, _ = two_data
    r = cli("report", *a, *b, *zeroshot, "--format", "json", "--against", "clipclap (epochs=1, batches-per-epoch=2)")
    assert r.exit_code == 0, r
    cells = {(c["method"].split()[0], c["dataset"]): c for c in json.loads(r.stdout)}
    col_b = f"demo [data {_digest(b[0])[:8]}]"
    assert set(cells) == {("clipclap", f"demo [data {_digest(a[0])[:8]}]"), ("clipclap", col_b),
                          ("zeroshot", col_b)}
    against = cells[("zeroshot", col_b)]["against"]
    assert against["shared_seeds"] == [1, 2]
    for m in METRICS:
        expected = stats.ttest_rel(_percent(zeroshot, m), _percent(b, m)).pvalue
        assert against["p"][m] == pytest.approx(expected), m
    assert all(not c["against"] for key, c in cells.items() if key[0] == "clipclap")


@TWO_DATA
def test_a_run_without_a_recorded_digest_is_not_averaged_with_one_that_has_it(cli, two_data, tmp_path):
    """A run from before the digest was recorded (here: edited out) is told apart by its store."""
    _, a, _, _, _ = two_data
    old = tmp_path / "old" / "seed2"
    shutil.copytree(a[1], old)
    config = json.loads((old / "config.json").read_text())
    del config["data_digest"]
    (old / "config.json").write_text(json.dumps(config))
    cells = json.loads(cli("report", a[0], old, "--format", "json").stdout)
    assert sorted(c["n"] for c in cells) == [1, 1]
    assert {c["data"] for c in cells} == {f"data {_digest(a[0])}", f"store {config['store']}"}


# ---------------------------------------------------------------- damaged runs


def _cut_metrics(run: Path) -> None:
    f = run / "stage1" / "metrics.jsonl"
    text = f.read_text()
    f.write_text(text[: len(text) - 40])  # the last line cut short, as a full disk leaves it


def _edit_results(edit):
    def apply(run: Path) -> None:
        results = _results(run)
        edit(results)
        (run / "results.json").write_text(json.dumps(results))
    return apply


def _edit_config(edit):
    def apply(run: Path) -> None:
        config = json.loads((run / "config.json").read_text())
        edit(config)
        (run / "config.json").write_text(json.dumps(config))
    return apply


def _nan_loss(run: Path) -> None:
    f = run / "stage2" / "metrics.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    rows[0]["losses"]["total"] = float("nan")
    f.write_text("".join(json.dumps(row) + "\n" for row in rows))  # json writes it as NaN


def _metrics_folder(run: Path) -> None:
    f = run / "stage1" / "metrics.jsonl"
    f.unlink()
    f.mkdir()


DAMAGE = {
    "truncated metrics.jsonl": (_cut_metrics, "stage1/metrics.jsonl line 1 is not JSON"),
    "no test_curve": (_edit_results(lambda r: r.pop("test_curve")), "results.json: test_curve"),
    "null per_class_accuracy": (_edit_results(lambda r: r.update(per_class_accuracy=None)),
                                "results.json: per_class_accuracy is None"),
    "results.json not JSON": (lambda run: (run / "results.json").write_text('{"test": {"seen": 0.'),
                              "results.json is not valid JSON"),
    "results.json not UTF-8": (lambda run: (run / "results.json").write_bytes(b"\xff\xfe{}"),
                               "results.json is not valid JSON"),
    "config.json not JSON": (lambda run: (run / "config.json").write_text("{"), "config.json is not valid JSON"),
    "a curve shorter than the others": (_edit_results(lambda r: r["test_curve"]["hm"].pop()),
                                        "test_curve's beta, seen, unseen and hm differ in length"),
    "a class accuracy as text": (_edit_results(lambda r: r["per_class_accuracy"]["seen"].update(
        {next(iter(r["per_class_accuracy"]["seen"])): "0.5"})), "not a fraction"),
    "no beta": (_edit_results(lambda r: r["test"].pop("beta")), "results.json: test beta is None"),
    "a NaN loss": (_nan_loss, "stage2/metrics.jsonl line 1: total loss is nan"),
    "metrics.jsonl a folder": (_metrics_folder, "stage1/metrics.jsonl cannot be read"),
    "a digest that is a number": (_edit_config(lambda c: c.update(data_digest=5)), "config.json: data_digest is 5"),
    "config.json without spec": (_edit_config(lambda c: c.pop("spec")), "config.json has no run spec"),
    "epochs as text": (_edit_config(lambda c: c["spec"]["train"].update(epochs="3")),
                       "config.json: spec train.epochs: expected a whole number"),
    "a NaN learning rate": (_edit_config(lambda c: c["spec"]["train"].update(lr=float("nan"))),
                            "config.json: spec train.lr"),
    "protocol defaults as a list": (_edit_config(lambda c: c["spec"].update(protocol_defaults=[1])),
                                    "config.json: spec protocol_defaults is [1]"),
}


@pytest.fixture(scope="module")
def damaged_report(tmp_path_factory, trained_run):
    """One `report --plots` over a good run and, beside it, one copy of it per kind of DAMAGE
    (seed 43, so that each would join the good run's row), each damaged its own way, under
    `damaged/` (which the session's walk for NaN in JSON leaves alone): what the report printed,
    its exit status, the good run, each case's damaged run and the figures' names."""
    pytest.importorskip("matplotlib")  # the plots extra is part of the test environment (.venv)
    from clipclap_cli.cli import run
    from clipclap_cli.plugins.manager import make_plugin_manager

    root = tmp_path_factory.mktemp("damaged-runs")
    runs, plots = root / "runs", root / "plots"
    good = runs / "good" / "seed42"
    shutil.copytree(trained_run, good)
    bad = {}
    for i, (case, (damage, _)) in enumerate(DAMAGE.items()):
        bad[case] = runs / "damaged" / f"case{i:02d}" / "seed43"
        shutil.copytree(trained_run, bad[case])
        _edit_results(lambda r: r.update(seed=43))(bad[case])
        damage(bad[case])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(["report", str(runs), "--format", "json", "--plots", str(plots)],
                   make_plugin_manager(entrypoints=False))
    return code, out.getvalue(), err.getvalue(), good, bad, sorted(p.name for p in plots.iterdir())


@pytest.mark.xdist_group("damaged-runs")  # every case reads the one report: drawn once, on one worker
@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_run_is_left_out_of_the_table_and_the_figures(damaged_report, case):
    """Beside a good run of the same settings and the other cases' damaged runs: one line names
    this case's damaged run and what is wrong; the table and the figures have the good run only;
    no traceback, with matplotlib installed."""
    code, stdout, stderr, good, bad, names = damaged_report
    bad, says = bad[case], DAMAGE[case][1]
    assert code == 0 and "Traceback" not in stderr, stderr
    warnings = [line for line in stderr.splitlines() if str(bad) in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"left out: {bad}: ") and says in warnings[0], stderr
    [cell] = json.loads(stdout)
    assert cell["n"] == 1 and cell["runs"] == [str(good)]
    assert cell["mean"]["hm"] == pytest.approx(100 * _results(good)["test"]["hm"])
    assert len(names) == 4 and names[0] == "comparison.png", names  # the good run's three and the comparison
    assert all("_good_" in n for n in names[1:]) and not any("damaged" in n or "case" in n for n in names)


def test_the_html_page_shows_only_the_runs_the_table_kept(cli, trained_run, tmp_path):
    pytest.importorskip("matplotlib")
    runs = tmp_path / "runs"
    good, bad = runs / "good" / "seed42", runs / "damaged" / "seed43"
    shutil.copytree(trained_run, good)
    shutil.copytree(trained_run, bad)
    _cut_metrics(bad)
    r = cli("report", runs, "--format", "html")
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r
    assert str(good) in r.stdout and str(bad) not in r.stdout
    assert r.stdout.count("<img ") == 4  # the comparison and the good run's three figures


def test_a_repeat_left_out_of_the_table_is_not_drawn(cli, trained_run, tmp_path):
    """The same seed trained twice counts once, by its newest run: the older is not drawn either."""
    pytest.importorskip("matplotlib")
    runs = tmp_path / "runs"
    old, new = runs / "old" / "seed42", runs / "new" / "seed42"
    shutil.copytree(trained_run, old)
    shutil.copytree(trained_run, new)
    os.utime(old / "results.json", ns=(1_000_000_000, 1_000_000_000))
    r = cli("report", runs, "--plots", tmp_path / "plots")
    assert r.exit_code == 0 and f"left out: {old}" in r.stderr, r
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(names) == 4 and not any("_old_" in n for n in names), names


# ---------------------------------------------------------------- outputs


def _no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_report_output_says_what_it_replaced_and_lands_whole(cli, trained_run, tmp_path, monkeypatch):
    out = tmp_path / "out" / "table.txt"  # an extension no format claims: every --format below writes it
    r = cli("report", trained_run, "-o", out)
    assert r.exit_code == 0 and r.stderr.strip() == f"table written to {out}", r
    table = out.read_text()
    assert table == cli("report", trained_run).stdout
    r = cli("report", trained_run, "-o", out)
    assert r.stderr.strip() == f"table written to {out} (it replaced the file that was there)", r
    out.write_text("the user's earlier table\n")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the disk fills as the new table is written
    for fmt in ("markdown", "html", "json"):
        line = _one_error_line(cli("report", trained_run, "--format", fmt, "-o", out))
        assert line == f"Error: cannot write {out}: No space left on device; nothing was changed there"
        assert out.read_text() == "the user's earlier table\n" and _no_temporary_files(out.parent)


def test_figures_land_whole_and_say_what_they_replaced(cli, trained_run, tmp_path, monkeypatch):
    matplotlib_image = pytest.importorskip("matplotlib.image")

    plots = tmp_path / "plots"
    r = cli("report", trained_run, "--plots", plots)
    assert r.exit_code == 0 and f"4 plots written to {plots}\n" in r.stderr, r
    before = tree_digest(plots)
    r = cli("report", trained_run, "--plots", plots)
    assert f"4 plots written to {plots} (4 replaced figures of the same name there)" in r.stderr, r
    real_imsave = matplotlib_image.imsave  # what writes each PNG

    def imsave_then_full_disk(fname, *args, **kwargs):
        real_imsave(fname, *args, **kwargs)
        Path(fname).write_bytes(Path(fname).read_bytes()[:100])  # what a filling disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib_image, "imsave", imsave_then_full_disk)
    line = _one_error_line(cli("report", trained_run, "--plots", plots))
    assert line.startswith(f"Error: cannot write {plots}/") and line.endswith(
        ".png: No space left on device; nothing was changed there"), line
    assert tree_digest(plots) == before and _no_temporary_files(plots)


def test_outputs_inside_a_run_or_a_store_are_refused(cli, trained_run, demo_store, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (tmp_path / "link").symlink_to(run / "stage1")  # a link into the run leads there too
    before, store_before = tree_digest(run), tree_digest(demo_store)
    for args, where in (((run, "-o", run / "results.json"), "inside the run"),
                        ((run, "-o", tmp_path / "link" / "metrics.jsonl"), "inside the run"),
                        ((run, "-o", run / "stage1" / "table.md"), "inside the run"),
                        ((run, "--plots", run / "plots"), "inside the run"),
                        ((run, "-o", demo_store / "table.md"), "inside the feature store"),
                        (("evaluate", run, "-o", run / "config.json"), "inside the run")):
        args = args if args[0] == "evaluate" else ("report", *args)
        line = _one_error_line(cli(*args))
        assert where in line and "write it elsewhere" in line, line
    assert tree_digest(run) == before and tree_digest(demo_store) == store_before


# ---------------------------------------------------------------- evaluate -o, JSON


def test_evaluate_output_writes_the_results_as_results_json_holds_them(cli, trained_run, tmp_path):
    """docs/train.md: `--output FILE` writes the results (as results.json: fractions, `units`
    says so); the line names the file, and says when it replaced one."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    out = tmp_path / "out" / "results.json"
    r = cli("evaluate", run, "-o", out)
    assert r.exit_code == 0, r
    assert json.loads(out.read_text()) == _results(run)
    assert _results(run)["units"]["accuracy"] == "fraction"
    [line] = r.stderr.strip().splitlines()
    assert line.endswith(f"-> {run / 'results.json'} and {out}"), line
    r = cli("evaluate", run, "-o", out, "--json")
    assert r.stderr.strip().endswith(f"-> {run / 'results.json'} and {out} (replacing the file that was there)")
    printed = json.loads(r.stdout)
    assert printed["units"]["accuracy"] == "percent"
    assert printed["test"]["hm"] == pytest.approx(100 * _results(run)["test"]["hm"])


def test_evaluate_never_prints_or_writes_nan(cli, trained_run, tmp_path, monkeypatch):
    from clipclap_cli.runs import results as results_mod

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)

    def nan_results(path, store=None, pm=None, data=None):
        return _results(path) | {"beta_star": float("nan")}

    monkeypatch.setattr(results_mod, "evaluate_run", nan_results)
    out = tmp_path / "out.json"
    line = _one_error_line(cli("evaluate", run, "-o", out))
    assert "beta_star is not a finite number" in line and not out.exists()
    r = cli("evaluate", run, "--json")
    assert r.exit_code == 1 and "beta_star is not a finite number" in r.stderr and r.stdout == "", r


def test_a_report_in_json_never_holds_nan():
    from clipclap_cli.errors import WriteError
    from clipclap_cli.report.grouping import Cell
    from clipclap_cli.report.tables import render

    cell = Cell("clipclap", "demo", 1, {m: 50.0 for m in METRICS} | {"hm": float("inf")}, {m: 0.0 for m in METRICS})
    with pytest.raises(WriteError, match=r"\[0\]\.mean\.hm is not a finite number"):
        render([cell], "json")
