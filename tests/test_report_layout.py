"""`clipclap report --layout paper` (issue 43 item 5): the datasets as column groups in the
paper's order (VGGSound | UCF | ActivityNet, each S, U, HM, ZSL, then the other datasets), one n
per row, the published rows (datasets.toml's `published`, what --published adds) under a rule,
in Markdown, LaTeX and HTML; the default layout as before. Every value is checked against the
results.json files written here, averaged by numpy, and datasets.toml read by tomllib."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

CLIPCLAP = {  # dataset: {seed: (S, U, ZSL) percent}; the folders sort activitynet, demo, ucf, vggsound
    "demo": {1: (50.0, 20.0, 40.0), 2: (52.0, 24.0, 41.0)},
    "activitynet": {1: (45.0, 20.0, 22.0), 2: (47.0, 21.0, 23.5), 3: (46.0, 19.0, 22.5)},
    "ucf": {1: (77.0, 43.0, 46.0), 2: (78.5, 44.5, 47.0), 3: (76.0, 42.0, 45.5)},
    "vggsound": {1: (29.0, 11.0, 11.5), 2: (30.5, 12.0, 12.0), 3: (28.0, 10.5, 11.0)},
}
ZEROSHOT_UCF = (20.0, 30.0, 60.0)
"A training-free row on ucf only: the same S, U, ZSL on seeds 1-3"
PAPER_ORDER = ["vggsound", "ucf", "activitynet", "demo"]
FIRST_SEEN = ["activitynet", "demo", "ucf", "vggsound"]
METRICS = ("seen", "unseen", "hm", "zsl")


def _write(trained_run: Path, to: Path, dataset: str, seed: int, s: float, u: float, z: float, head: str | None = None):
    """A run with the trained run's config (its dataset and seed changed) and a results.json whose
    test figures are set by hand; no checkpoints or logs (the tables read neither)."""
    to.mkdir(parents=True)
    results = json.loads((trained_run / "results.json").read_text())
    results["seed"] = seed
    results["test"].update(seen=s / 100, unseen=u / 100, hm=2 * s * u / (s + u) / 100, zsl=z / 100)
    (to / "results.json").write_text(json.dumps(results))
    config = json.loads((trained_run / "config.json").read_text())
    config["spec"]["dataset"], config["spec"]["train"]["seed"] = dataset, seed
    if head is not None:
        config["spec"]["head"] = head
    (to / "config.json").write_text(json.dumps(config))


@pytest.fixture
def runs(trained_run, tmp_path):
    root = tmp_path / "runs"
    for dataset, seeds in CLIPCLAP.items():
        for seed, values in seeds.items():
            _write(trained_run, root / dataset / "clipclap" / f"seed{seed}", dataset, seed, *values)
    for seed in (1, 2, 3):
        _write(trained_run, root / "ucf" / "zeroshot" / f"seed{seed}", "ucf", seed, *ZEROSHOT_UCF, head="zeroshot")
    return root


def _expected(values: dict[int, tuple[float, float, float]]) -> dict[str, tuple[float, float]]:
    """Per metric the mean and sample std over seeds, by numpy, HM per seed from S and U."""
    per_metric = {"seen": [v[0] for v in values.values()], "unseen": [v[1] for v in values.values()],
                  "hm": [2 * v[0] * v[1] / (v[0] + v[1]) for v in values.values()],
                  "zsl": [v[2] for v in values.values()]}
    return {m: (float(np.mean(x)), float(np.std(x, ddof=1))) for m, x in per_metric.items()}


def _published() -> dict[str, dict[str, dict[str, float]]]:
    with open(REPO / "datasets.toml", "rb") as f:
        return {name: entry.get("published", {}) for name, entry in tomllib.load(f)["datasets"].items()}


def _numbers(text: str) -> list[str]:
    """The values an entry shows, in order: mean, then std where there is one (then an HTML
    entry's interval)."""
    return re.findall(r"\d+\.\d\d", text)


def _check_row(entries: list[str], datasets: list[str], expect: dict[str, dict[str, tuple[float, float]]],
               published: dict[str, dict[str, float]] | None = None):
    """`entries`: a row's metric entries, dataset after dataset in `datasets`' order."""
    assert len(entries) == 4 * len(datasets), entries
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(METRICS):
            shown = _numbers(entries[4 * i + j])
            if published is not None:
                value = published.get(dataset, {}).get(metric)
                assert shown == ([f"{value:.2f}"] if value is not None else []), (dataset, metric, entries[4 * i + j])
            elif dataset not in expect:
                assert shown == [], (dataset, metric, entries[4 * i + j])
            else:
                mean, std = expect[dataset][metric]
                assert shown[:2] == [f"{mean:.2f}", f"{std:.2f}"], (dataset, metric, entries[4 * i + j])


def _expectations():
    clipclap = {d: _expected(v) for d, v in CLIPCLAP.items()}
    zeroshot = {"ucf": _expected(dict.fromkeys((1, 2, 3), ZEROSHOT_UCF))}
    published = _published()
    paper_rows = {f"{head} (paper)": {d: published[d][head] for d in PAPER_ORDER if head in published[d]}
                  for d in PAPER_ORDER for head in published[d]}
    return clipclap, zeroshot, paper_rows


def test_markdown_paper_layout_puts_the_datasets_in_the_papers_order_and_the_published_rows_under_a_rule(
        cli, runs):
    r = cli("report", runs, "--layout", "paper", "--published")
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r
    table = r.stdout.split("\n\n")[0].splitlines()
    assert table[0] == ("| Method | n | " + " | ".join(f"{d} {m}" for d in PAPER_ORDER for m in ("S", "U", "HM", "ZSL"))
                        + " |")
    rows = [[x.strip() for x in line.strip("|").split("|")] for line in table[2:]]
    names = [row[0] for row in rows]
    rule = names.index("**Published**")
    assert all(cell == "" for cell in rows[rule][1:]) and len(rows[rule]) == 2 + 16
    clipclap, zeroshot, paper_rows = _expectations()
    assert [n.split(" (")[0] for n in names[:rule]] == ["clipclap", "zeroshot"]  # the runs' rows, above the rule
    assert names[rule + 1:] == list(paper_rows)  # every published row, below it
    by_name = {row[0].split(" (")[0] if i < rule else row[0]: row for i, row in enumerate(rows)}
    assert by_name["clipclap"][1] == "3/3/3/2" and by_name["zeroshot"][1] == "–/3/–/–"  # n per dataset
    _check_row(by_name["clipclap"][2:], PAPER_ORDER, clipclap)
    _check_row(by_name["zeroshot"][2:], PAPER_ORDER, zeroshot)
    assert all(x.endswith("§") for x in by_name["zeroshot"][6:10])  # its tests still marked (no spread)
    for name, values in paper_rows.items():
        assert by_name[name][1] == "–"
        _check_row(by_name[name][2:], PAPER_ORDER, {}, values)
    assert "n: seeds per entry, one per dataset in the columns' order where they differ" in r.stdout


def test_the_default_layout_is_unchanged_first_seen_columns_n_per_dataset_published_rows_below_their_head(cli, runs):
    r = cli("report", runs, "--published")
    table = r.stdout.split("\n\n")[0].splitlines()
    assert table[0] == ("| Method | " + " | ".join(f"{d} {m}" for d in FIRST_SEEN for m in ("n", "S", "U", "HM", "ZSL"))
                        + " |")
    names = [line.split(" | ")[0].strip("| ") for line in table[2:]]
    assert names[0].startswith("clipclap (") and names[1] == "clipclap (paper)" and "**Published**" not in names
    assert names[2].startswith("zeroshot (")


def _latex_cells(line: str) -> list[str]:
    return [x.strip() for x in line.removesuffix(r"\\").split(" & ")]


def test_latex_paper_layout_groups_the_datasets_in_the_papers_order_with_the_published_rows_under_a_midrule(
        cli, runs):
    r = cli("report", runs, "--layout", "paper", "--published", "--format", "latex")
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r
    lines = r.stdout.splitlines()
    assert r"\begin{table*}[tbp]" in lines  # four datasets: both columns of a two-column article
    head = next(line for line in lines if line.startswith("Method & $n$ & "))
    assert re.findall(r"\\multicolumn\{4\}\{c\}\{(\w+)\}", head) == PAPER_ORDER
    assert lines[lines.index(head) + 1] == "".join(rf"\cmidrule(lr){{{3 + 4 * i}-{6 + 4 * i}}}" for i in range(4))
    assert lines[lines.index(head) + 2] == " &  & " + " & ".join(["S", "U", "HM", "ZSL"] * 4) + r" \\"
    body = lines[lines.index(head) + 4:lines.index(r"\bottomrule")]
    rule = body.index(r"\midrule")
    clipclap, zeroshot, paper_rows = _expectations()
    above = {_latex_cells(line)[0]: _latex_cells(line) for line in body[:rule]}
    below = [_latex_cells(line) for line in body[rule + 1:]]
    assert list(above) == [r"clipclap\textsuperscript{a}", r"zeroshot\textsuperscript{b}"]  # short labels
    assert [row[0] for row in below] == list(paper_rows)
    assert above[r"clipclap\textsuperscript{a}"][1] == "3/3/3/2"
    assert above[r"zeroshot\textsuperscript{b}"][1] == "--/3/--/--"
    _check_row(above[r"clipclap\textsuperscript{a}"][2:], PAPER_ORDER, clipclap)
    _check_row(above[r"zeroshot\textsuperscript{b}"][2:], PAPER_ORDER, zeroshot)
    for row, values in zip(below, paper_rows.values(), strict=True):
        assert row[1] == "--"
        _check_row(row[2:], PAPER_ORDER, {}, values)
    # the rows' settings in the footnote, under the table
    assert (r"\textsuperscript{a}\,epochs=\allowbreak{}1, batches-per-epoch=\allowbreak{}2; "
            r"\textsuperscript{b}\,epochs=\allowbreak{}1, batches-per-epoch=\allowbreak{}2.\par") in lines


def test_html_paper_layout_has_the_papers_column_order_and_the_published_rows_in_a_ruled_tbody(runs):
    """The page's results table (the page itself, figures and all, is test_report_formats')."""
    from clipclap_cli.report.grouping import aggregate, with_published
    from clipclap_cli.report.html_page import results_table
    from clipclap_cli.report.loading import load_runs
    from clipclap_cli.report.seed_statistics import compare
    from clipclap_cli.runs.finding import find_runs

    found, _ = find_runs([runs])
    loaded, skipped = load_runs(found)
    assert not skipped
    cells = with_published(compare(aggregate(loaded), None, lambda *a: None), _published())
    table = results_table(cells, METRICS, paper=True)
    assert re.findall(r'<th colspan="4">(\w+)</th>', table) == PAPER_ORDER
    assert table.index('<th rowspan="2">n</th>') < table.index('<th colspan="4">')
    own, published = table.split('<tbody class="published"')
    clipclap, zeroshot, paper_rows = _expectations()

    def rows(part: str) -> dict[str, list[str]]:
        found = re.findall(r"<tr><td>([^<]*)</td>(.*?)</tr>", part)
        return {name.split(" (")[0] if "(paper)" not in name else name: re.findall(r'<td class="num">(.*?)</td>', tds)
                for name, tds in found}

    above, below = rows(own), rows(published)
    assert list(above) == ["clipclap", "zeroshot"] and list(below) == list(paper_rows)
    assert above["clipclap"][0] == "3/3/3/2" and above["zeroshot"][0] == "–/3/–/–"
    _check_row(above["clipclap"][1:], PAPER_ORDER, clipclap)
    _check_row(above["zeroshot"][1:], PAPER_ORDER, zeroshot)
    for name, values in paper_rows.items():
        _check_row(below[name][1:], PAPER_ORDER, {}, values)
    default = results_table(cells, METRICS)
    assert '<tbody class="published"' not in default
    assert re.findall(r'<th colspan="5">(\w+)</th>', default) == FIRST_SEEN


def test_the_paper_layout_is_refused_where_a_format_has_no_wide_table(cli, runs, tmp_path):
    target = tmp_path / "t.csv"
    r = cli("report", runs, "--layout", "paper", "-o", target)
    assert r.exit_code == 1 and not target.exists()
    assert "--layout paper lays out the wide tables" in r.stderr, r.stderr
    assert "unknown layout 'papers'" in cli("report", runs, "--layout", "papers").stderr


def test_a_split_or_data_of_a_paper_dataset_sorts_with_it():
    from clipclap_cli.report.grouping import paper_rank

    columns = ["demo", "activitynet", "ucf (other) [data 1a2b3c4d]", "mine", "vggsound", "ucf"]
    assert sorted(columns, key=paper_rank) == ["vggsound", "ucf (other) [data 1a2b3c4d]", "ucf", "activitynet",
                                               "demo", "mine"]
