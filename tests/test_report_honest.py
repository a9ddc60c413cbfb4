"""`clipclap report` as a reviewer pastes it into a paper (issue 43 items 1-3): `-o FILE` writes
the format its extension names; `--against` never drops the paired tests silently; every format
gives n, intervals that stay inside 0-100 and marks what rests on too few seeds or no spread.

The runs are copies of the session's one trained run with their results edited by hand (no new
training): each seed's value is known, so every statistic is computed here independently
(scipy.stats.t.interval, scipy.stats.ttest_rel, clipping by hand)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import warnings

import pytest

# ---------------------------------------------------------------- 1. -o FILE by its extension


@pytest.mark.parametrize(("name", "starts"), [
    ("report.html", "<!DOCTYPE html>"),
    ("report.tex", "% needs \\usepackage{booktabs}"),
    ("report.csv", "method,dataset,n,"),
    ("report.json", "["),
    ("report.md", "| Method |"),
    ("report.txt", "| Method |"),  # an extension no format claims: markdown, as without -o
])
def test_output_is_written_in_the_format_its_extension_names(cli, trained_run, tmp_path, name, starts):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "a" / "seed42")
    target = tmp_path / name
    r = cli("report", runs, "-o", target)
    assert r.exit_code == 0, r
    text = target.read_text()
    assert text.startswith(starts), text[:200]
    if name.endswith(".tex"):
        assert r"\begin{tabular}" in text and "| Method |" not in text
    if name.endswith(".html"):
        assert text.rstrip().endswith("</html>") and "| Method |" not in text
    if name.endswith(".json"):
        [cell] = json.loads(text)
        assert cell["n"] == 1


def test_an_explicit_format_that_agrees_with_the_extension_or_names_none_is_kept(cli, trained_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "a" / "seed42")
    assert cli("report", runs, "--format", "csv", "-o", tmp_path / "t.csv").exit_code == 0
    assert (tmp_path / "t.csv").read_text().startswith("method,dataset,n,")
    assert cli("report", runs, "--format", "latex", "-o", tmp_path / "table.txt").exit_code == 0
    assert (tmp_path / "table.txt").read_text().startswith("% needs")


def test_a_format_that_contradicts_the_extension_is_refused_in_one_line_and_nothing_written(
        cli, trained_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "a" / "seed42")
    target = tmp_path / "report.html"
    r = cli("report", runs, "--format", "markdown", "-o", target)
    assert r.exit_code == 1 and not target.exists()
    [line] = r.stderr.strip().splitlines()
    assert "--format markdown contradicts" in line and "report.html is html" in line, line
    kept = tmp_path / "kept.tex"
    kept.write_text("mine")
    assert cli("report", runs, "-f", "json", "-o", kept).exit_code == 1 and kept.read_text() == "mine"


# ---------------------------------------------------------------- runs whose every value is known


def _run(trained_run, to, seed: int, s: float, u: float, zsl: float, head: str | None = None, lr: float | None = None):
    """A copy of the trained run as seed `seed` with test S, U, ZSL (percent) set by hand, HM
    following from S and U; `head` renames its head (another row), `lr` changes a setting (another
    row of the same head)."""
    shutil.copytree(trained_run, to)
    results = json.loads((to / "results.json").read_text())
    results["seed"] = seed
    results["test"].update(seen=s / 100, unseen=u / 100, hm=2 * s * u / (s + u) / 100, zsl=zsl / 100)
    (to / "results.json").write_text(json.dumps(results))
    config = json.loads((to / "config.json").read_text())
    config["spec"]["train"]["seed"] = seed
    if head is not None:
        config["spec"]["head"] = head
    if lr is not None:
        config["spec"]["train"]["lr"] = lr
    (to / "config.json").write_text(json.dumps(config))
    return to


def _csv_rows(r) -> dict[str, dict]:
    assert r.exit_code == 0, r
    return {row["method"].split()[0]: row for row in csv.DictReader(io.StringIO(r.stdout))}


def _hm(s: float, u: float) -> float:
    return 2 * s * u / (s + u)


CLIPCLAP = {1: (90.0, 1.0, 80.0), 2: (99.5, 9.0, 86.0), 3: (95.0, 4.0, 83.0)}
"seed: S, U, ZSL (percent) of the clipclap row"
ZEROSHOT = (20.0, 30.0, 60.0)
"The training-free row: the same S, U, ZSL on every seed (no spread)"


@pytest.fixture
def rows(trained_run, tmp_path):
    """clipclap (its settings in its name) seeds 1, 2 and 3; zeroshot seeds 1, 2, 3 without spread."""
    runs = tmp_path / "runs"
    for seed, (s, u, z) in CLIPCLAP.items():
        _run(trained_run, runs / "clipclap" / f"seed{seed}", seed, s, u, z)
        _run(trained_run, runs / "zeroshot" / f"seed{seed}", seed, *ZEROSHOT, head="zeroshot")
    return runs


def _cells(r) -> dict[str, dict]:
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r
    return {c["method"].split()[0]: c for c in json.loads(r.stdout)}


# ---------------------------------------------------------------- 2. --against


def test_a_typo_in_against_is_an_error_listing_the_rows(cli, rows):
    r = cli("report", rows, "--against", "clipclapp")
    assert r.exit_code == 1 and r.stdout == ""
    [line] = r.stderr.strip().splitlines()
    assert "--against clipclapp matches no row" in line, line
    assert "clipclap (epochs=1, batches-per-epoch=2)" in line and "zeroshot (epochs=1, batches-per-epoch=2)" in line


def test_the_default_against_matches_the_clipclap_row_whatever_its_settings(cli, rows):
    """The clipclap row is named with its settings; `--against` left out still compares zeroshot
    with it, and JSON holds scipy's p-value for every metric."""
    from scipy import stats

    cells = _cells(cli("report", rows, "--format", "json"))
    against = cells["zeroshot"]["against"]
    assert against["method"] == cells["clipclap"]["method"] == "clipclap (epochs=1, batches-per-epoch=2)"
    assert against["shared_seeds"] == [1, 2, 3] and cells["clipclap"]["against"] == {}
    ref = {"seen": [v[0] for v in CLIPCLAP.values()], "unseen": [v[1] for v in CLIPCLAP.values()],
           "zsl": [v[2] for v in CLIPCLAP.values()]}
    ref["hm"] = [_hm(s, u) for s, u in zip(ref["seen"], ref["unseen"], strict=True)]
    flat = dict(zip(("seen", "unseen", "zsl"), ZEROSHOT, strict=True)) | {"hm": _hm(*ZEROSHOT[:2])}
    for m, values in ref.items():
        expected = stats.ttest_rel([flat[m]] * 3, values).pvalue
        assert against["p"][m] == pytest.approx(expected, rel=1e-6), m
    md = cli("report", rows).stdout
    assert "Paired t-tests against clipclap (epochs=1, batches-per-epoch=2)" in md


def test_against_names_a_head_or_a_row_and_the_reference_is_never_tested(cli, rows):
    by_head = _cells(cli("report", rows, "--format", "json", "--against", "zeroshot"))
    by_row = _cells(cli("report", rows, "--format", "json", "--against", "zeroshot (epochs=1, batches-per-epoch=2)"))
    assert by_head == by_row
    assert by_head["zeroshot"]["against"] == {} and by_head["clipclap"]["against"]["shared_seeds"] == [1, 2, 3]


def test_two_rows_of_the_default_head_make_no_tests_and_say_so_and_naming_the_head_is_refused(
        cli, rows, trained_run):
    _run(trained_run, rows / "clipclap-lr" / "seed1", 1, 50.0, 50.0, 50.0, lr=1e-3)
    _run(trained_run, rows / "clipclap-lr" / "seed2", 2, 51.0, 50.0, 50.0, lr=1e-3)
    r = cli("report", rows, "--format", "json")
    assert all(not c["against"] for c in json.loads(r.stdout))
    assert "no paired tests on demo: --against clipclap matches 2 rows of demo" in r.stderr, r.stderr
    refused = cli("report", rows, "--against", "clipclap")
    assert refused.exit_code == 1 and "matches 2 rows of demo" in refused.stderr and refused.stdout == ""


# ---------------------------------------------------------------- 3. honest statistics


def _interval(values: list[float]) -> list[float]:
    """scipy's t interval of the mean, cut by hand to the metric's range 0-100."""
    import statistics

    from scipy import stats

    low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                 scale=statistics.stdev(values) / len(values) ** 0.5)
    return [max(low, 0.0), min(high, 100.0)]


def _by_metric(table: dict[int, tuple[float, float, float]]) -> dict[str, list[float]]:
    s, u, z = ([v[i] for v in table.values()] for i in range(3))
    return {"seen": s, "unseen": u, "hm": [_hm(a, b) for a, b in zip(s, u, strict=True)], "zsl": z}


TWO = {1: (99.5, 1.0, 80.0), 2: (90.0, 9.0, 86.0)}
"Two seeds of clipclap whose raw t intervals reach past 100 % (S) and below 0 % (U)"


@pytest.fixture
def two_seeds(trained_run, tmp_path):
    runs = tmp_path / "two"
    for seed, (s, u, z) in TWO.items():
        _run(trained_run, runs / "clipclap" / f"seed{seed}", seed, s, u, z)
        _run(trained_run, runs / "zeroshot" / f"seed{seed}", seed, *ZEROSHOT, head="zeroshot")
    return runs


def test_intervals_are_scipys_t_intervals_cut_to_0_100_and_n_is_on_every_row(cli, rows, two_seeds):
    for runs, table in ((rows, CLIPCLAP), (two_seeds, TWO)):
        cells = _cells(cli("report", runs, "--format", "json"))
        clipclap = cells["clipclap"]
        assert clipclap["n"] == len(table) and clipclap["ci95_few_seeds"] is (len(table) < 3)
        for m, values in _by_metric(table).items():
            assert clipclap["ci95"][m] == pytest.approx(_interval(values), abs=1e-9), m
            assert 0 <= clipclap["ci95"][m][0] <= clipclap["ci95"][m][1] <= 100
        # the raw intervals do leave the range: the cut is what keeps them possible
        assert clipclap["ci95"]["seen"][1] == 100.0
        zeroshot = cells["zeroshot"]
        assert zeroshot["ci95"] == {m: [v, v] for m, v in zeroshot["mean"].items()}  # no spread: the mean itself
    low, high = _interval(_by_metric(TWO)["unseen"])
    assert low == 0.0 and high < 100

    md = cli("report", two_seeds).stdout
    table, rest = md.split("\n\n", 1)
    lines = table.splitlines()
    assert lines[0] == "| Method | demo n | demo S | demo U | demo HM | demo ZSL |"
    assert all(line.split(" | ")[1] == "2" for line in lines[2:]), lines  # n on every row
    assert f"| clipclap (epochs=1, batches-per-epoch=2) | demo | 2 | {_interval([99.5, 90.0])[0]:.2f}–100.00‡ |" in md
    assert f"| 0.00–{high:.2f}‡ |" in md and not re.search(r"[ –]-\d", md)  # no negative bound anywhere
    assert "‡ rests on fewer than 3 seeds" in rest

    clipclap_csv = _csv_rows(cli("report", two_seeds, "-f", "csv"))["clipclap"]
    assert clipclap_csv["n"] == "2" and clipclap_csv["ci95_few_seeds"] == "true"
    assert float(clipclap_csv["seen_ci95_high"]) == 100.0 and float(clipclap_csv["unseen_ci95_low"]) == 0

    page = cli("report", two_seeds, "-f", "html", "--no-su").stdout
    assert "<th>n</th><th>HM</th><th>ZSL</th>" in page and '<td class="num">2</td>' in page
    assert f"95 % CI {_interval(_by_metric(TWO)['hm'])[0]:.2f}–" in page and "‡</span>" in page
    latex = cli("report", two_seeds, "-f", "latex").stdout
    assert " & $n$ & S & U & HM & ZSL \\\\" in latex and r"clipclap\textsuperscript{a} & 2 & " in latex
    assert r"\textsuperscript{a}\,epochs=\allowbreak{}1, batches-per-epoch=\allowbreak{}2" in latex  # its settings


def test_p_values_on_two_seeds_or_a_row_without_spread_are_marked_with_what_the_test_can_tell(
        cli, rows, two_seeds):
    """zeroshot has the same value on every seed: its tests are marked § in every format; on two
    seeds they are marked ‡ as well; on three they are not. Each format says what the test can
    and cannot tell."""
    from scipy import stats

    three = _cells(cli("report", rows, "--format", "json"))["zeroshot"]["against"]
    two = _cells(cli("report", two_seeds, "--format", "json"))["zeroshot"]["against"]
    for against, table in ((three, CLIPCLAP), (two, TWO)):
        few = len(table) < 3
        assert against["few_seeds"] is few
        for m, values in _by_metric(table).items():
            flat = {"seen": ZEROSHOT[0], "unseen": ZEROSHOT[1], "zsl": ZEROSHOT[2], "hm": _hm(*ZEROSHOT[:2])}[m]
            assert against["p"][m] == pytest.approx(stats.ttest_rel([flat] * len(values), values).pvalue, rel=1e-6)
            assert against["no_spread"][m] == ["zeroshot (epochs=1, batches-per-epoch=2)"]
            assert "has the same value on every seed" in against["caveats"][m]
            assert ("over 2 shared seeds only" in against["caveats"][m]) is few
        assert "cannot tell whether the difference holds on other data" in against["note"]

    md3, md2 = cli("report", rows).stdout, cli("report", two_seeds).stdout
    tests3 = md3.split("Paired t-tests against")[1]
    tests2 = md2.split("Paired t-tests against")[1]
    zs3 = next(line for line in tests3.splitlines() if line.startswith("| zeroshot"))
    zs2 = next(line for line in tests2.splitlines() if line.startswith("| zeroshot"))
    assert all(v.endswith("§") and "‡" not in v for v in zs3.strip("| ").split(" | ")[3:]), zs3
    assert all(v.endswith("‡§") for v in zs2.strip("| ").split(" | ")[3:]), zs2
    for md in (md3, md2):
        assert "cannot tell whether the difference holds on other data" in md
        assert "§ a row has the same value on every seed" in md
    assert "‡" not in md3  # three seeds everywhere: nothing rests on fewer
    rows_csv = _csv_rows(cli("report", rows, "-f", "csv"))
    assert "has the same value on every seed" in rows_csv["zeroshot"]["hm_p_caveat"]
    assert rows_csv["clipclap"]["hm_p_caveat"] == ""
    latex = cli("report", two_seeds, "-f", "latex").stdout
    assert r"$^{\ddagger\S}$" in latex and "cannot tell whether the difference holds" in latex
    page = cli("report", two_seeds, "-f", "html").stdout
    assert "cannot tell whether the difference holds on other data" in page and "‡§</td>" in page


def test_a_metric_on_which_neither_row_varies_says_the_test_tells_nothing(cli, trained_run, tmp_path):
    """As a shortened demo gives: clipclap's S the same on every seed, like zeroshot's. The S test
    is marked, its caveat says it tells nothing, and scipy's precision warning does not reach the
    terminal (the mark says it for the person reading)."""
    runs = tmp_path / "runs"
    for seed, u in ((1, 1.0), (2, 3.0), (3, 2.0)):
        _run(trained_run, runs / "clipclap" / f"seed{seed}", seed, 2.38, u, 16.0 + seed)
        _run(trained_run, runs / "zeroshot" / f"seed{seed}", seed, *ZEROSHOT, head="zeroshot")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # scipy's warning would fail the command
        r = cli("report", runs, "--format", "json")
        md = cli("report", runs)
    against = _cells(r)["zeroshot"]["against"]
    assert len(against["no_spread"]["seen"]) == 2 and "neither row varies" in against["caveats"]["seen"]
    assert against["no_spread"]["unseen"] == ["zeroshot (epochs=1, batches-per-epoch=2)"]
    assert "neither row varies" not in against["caveats"]["unseen"]
    assert md.exit_code == 0 and "where neither row varies it tells nothing" in md.stdout
    assert "RuntimeWarning" not in r.stderr + md.stderr and "Precision loss" not in r.stderr + md.stderr
