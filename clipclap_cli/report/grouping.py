"""Runs grouped into the cells of a results table (methods x datasets).

Runs that differ only in their seed form one cell, reported as mean ± sample standard deviation
with the number of runs; runs of different data (their config.json's digest) are never one
cell, and each data gets its own column. The paper's results join as rows 'HEAD (paper)'. A
metric that some run of a cell lacks (written before clipclap computed it) is missing from the
cell, never a mean over fewer seeds than the cell counts.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from clipclap_cli.metric_table import METRICS
from clipclap_cli.protocol import completed_train_settings
from clipclap_cli.report.loading import RunResult
from clipclap_cli.report.seed_statistics import FEW_SEEDS, confidence_interval
from clipclap_cli.runs.files import RESULTS

PAPER = " (paper)"
"What a published result's method name ends with"


@dataclass
class Cell:
    """One method x dataset entry: per metric mean and std (percent) over `n` seeds. A published
    result (`n` = 0) has the metrics the paper gives, and no std. A metric missing from `mean`
    is shown as missing in every format."""

    method: str
    dataset: str
    n: int
    mean: dict[str, float]
    std: dict[str, float]
    seeds: list[int] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    head: str = ""
    "The fusion head: the paper's row of a head goes below its runs, whatever their settings"
    replaced: list[str] = field(default_factory=list)
    "Runs left out: an older run of a seed (and settings) that a newer run of the cell repeats"
    data: str = ""
    "What its runs were trained on (`RunResult.data`); `data_tag` labels its column (`tag_data`)"
    data_tag: str = ""
    stores: list[str] = field(default_factory=list)
    "The stores its runs recorded (one data may sit in several stores: a copy, a move)"
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    "Per metric, each seed's value (percent), keyed by the seed as text (JSON's keys)"
    ci95: dict[str, list[float]] = field(default_factory=dict)
    """Per metric, the 95 % confidence interval of the mean over seeds (Student's t), when n >= 2,
    cut to the metric's range (0-100 %)"""
    against: dict[str, Any] = field(default_factory=dict)
    """The paired comparison with the reference row of the same dataset (`compare`): its method,
    the seeds both have, and per metric the two-sided p-value of a paired t-test over them and
    whether the two differ at the 5 % level"""

    @property
    def ci95_few_seeds(self) -> bool:
        "Its intervals rest on fewer than `seed_statistics.FEW_SEEDS` seeds (marked in every format)"
        return 1 < self.n < FEW_SEEDS

    def as_json(self) -> dict[str, Any]:
        """The cell as `report --format json` gives it: every field, and `ci95_few_seeds`."""
        return self.__dict__ | {"ci95_few_seeds": self.ci95_few_seeds}


def tag_data(runs: list[RunResult]) -> None:
    """Label the runs of a dataset trained on different data (`RunResult.data`), one column per
    data: 'data ' and the shortest start of the digest (8 characters at least) that tells them
    apart, 'store PATH' without a digest, 'data unrecorded' without either."""
    for base in {r.base_dataset for r in runs}:
        group = [r for r in runs if r.base_dataset == base]
        kinds = sorted({r.data for r in group})
        digests = [k[5:] for k in kinds if k.startswith("data ")]
        width = next((w for w in range(8, 33) if len({d[:w] for d in digests}) == len(digests)), 32)
        for r in group:  # a dataset trained on one data keeps its plain column
            r.data_tag = ("" if len(kinds) < 2 else f"data {r.data[5:5 + width]}" if r.data.startswith("data ")
                          else r.data or "data unrecorded")


def aggregate(runs: list[RunResult]) -> list[Cell]:
    """Group runs differing only in seed; cells in first-seen order of method and dataset. Runs
    of different data are never one group: their columns are labelled (`tag_data`)."""
    tag_data(runs)
    groups: dict[str, list[RunResult]] = {}
    for r in runs:
        groups.setdefault(r.group_key(), []).append(r)
    cells, labels = [], {}
    for group in groups.values():
        members, replaced = _one_run_per_seed(group)
        first = members[0]
        method = first.method
        # two groups with the same method label (runs from before clipclap named their epochs or lr
        # in it, or differing in a setting no option sets, such as weight decay): tell them apart
        label_key = (method, first.dataset)
        if label_key in labels:
            t = completed_train_settings(first.spec["train"])
            method += f" [lr={t['lr']}, epochs={t['epochs']}, batches={t['batches_per_epoch']}]"
        labels[label_key] = True
        values = {m: [100 * r.results["test"][m] for r in members] for m in METRICS
                  if all(m in r.results["test"] for r in members)}
        cells.append(Cell(
            method, first.dataset, len(members),
            {m: statistics.fmean(v) for m, v in values.items()},
            {m: statistics.stdev(v) if len(v) > 1 else 0.0 for m, v in values.items()},
            sorted(r.seed for r in members),
            [str(r.path) for r in members],
            first.spec["head"],
            [str(r.path) for r in replaced],
            first.data,
            first.data_tag,
            sorted({str(r.config.get("store")) for r in members if r.config.get("store")}),
            {m: {str(r.seed): v for r, v in zip(members, vs, strict=True)} for m, vs in values.items()},
            {m: confidence_interval(v) for m, v in values.items() if len(v) > 1},
        ))
    return cells


def _one_run_per_seed(group: list[RunResult]) -> tuple[list[RunResult], list[RunResult]]:
    """The runs of a group (same dataset, split, head and settings) that count, one per seed: a
    seed trained twice counts once, by its newest results (the older run is a repeat, not a new
    sample); and the runs left out."""
    newest: dict[int, RunResult] = {}
    for run in sorted(group, key=lambda r: (r.path / RESULTS).stat().st_mtime_ns):
        newest[run.seed] = run
    kept = [newest[seed] for seed in sorted(newest)]
    return kept, [r for r in group if all(r is not k for k in kept)]


def with_published(cells: list[Cell], published: dict[str, dict[str, dict[str, float]]]) -> list[Cell]:
    """`cells` and the published results of their datasets (`published[dataset][head]`, percent;
    its "seeds", where given, the seeds they come from) as rows 'HEAD (paper)' with n = 0, each
    right below the rows of the same head when the table has some."""
    paper: dict[str, list[Cell]] = {}
    columns = {c.dataset: c.dataset.removesuffix(f" [{c.data_tag}]") if c.data_tag else c.dataset for c in cells}
    for dataset, base in columns.items():  # a dataset trained on several data: the paper's row in each column
        for head, values in published.get(base, {}).items():
            values = dict(values)
            seeds = list(values.pop("seeds", []))
            paper.setdefault(head, []).append(Cell(head + PAPER, dataset, 0, values, {}, seeds, head=head))
    out: list[Cell] = []
    for head in dict.fromkeys(c.head for c in cells):
        out += [c for c in cells if c.head == head] + paper.pop(head, [])
    return out + [c for rows in paper.values() for c in rows]


LAYOUTS = ("default", "paper")
"`report --layout`: default (rows and columns as first seen, the paper's rows below their head's) or paper"
PAPER_DATASETS = ("vggsound", "ucf", "activitynet")
"The paper's column order (VGGSound-GZSL | UCF-GZSL | ActivityNet-GZSL); other datasets follow, as first seen"


def layout(cells: list[Cell], paper: bool = False):
    """The table's rows (methods) and columns (datasets), and the cells by both. Rows and columns
    in first-seen order; with `paper` (`report --layout paper`) the columns in the paper's order
    (PAPER_DATASETS first, a split or data of one after it, then the others as first seen) and
    the published rows (`published_rows`) after every other."""
    methods = list(dict.fromkeys(c.method for c in cells))
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    if paper:
        datasets.sort(key=paper_rank)  # stable: the same rank keeps its first-seen order
        published = published_rows(cells)
        methods = [m for m in methods if m not in published] + [m for m in methods if m in published]
    by = {(c.method, c.dataset): c for c in cells}
    return methods, datasets, by


def paper_rank(dataset: str) -> int:
    """A column's place in the paper's order: its dataset's (the name before a split or data
    tag, 'ucf (other_split) [data 1a2b3c4d]' is ucf's) in PAPER_DATASETS, the others after."""
    base = dataset.split(" ", 1)[0]
    return PAPER_DATASETS.index(base) if base in PAPER_DATASETS else len(PAPER_DATASETS)


def published_rows(cells: list[Cell]) -> set[str]:
    """The rows that hold published results only (`with_published`: no seeds here), which the
    paper layout puts under a rule."""
    return {c.method for c in cells if c.n == 0} - {c.method for c in cells if c.n}
