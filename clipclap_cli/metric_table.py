"""The one table of the test metrics (SPEC.md "Evaluation"): S, U, HM and ZSL.

Each row says everything the code needs to know about a metric: its key in results.json, its
label in the tables and figures, its unit, how it is read off the evaluation's result, whether
it is drawn over the bias grid (and how), and what it must follow from. Computing
(`evaluate/metrics.py`, `evaluate/evaluation.py`), the results files, the checks of a results
file, every report format and the figures read this table, so adding a metric is one row here
(and its computation in `evaluate/metrics.py` when it is new). A results.json written before a
metric was added still reports: that cell is marked missing in each format (`report/tables.py`).

A metric's column in each report format:

- markdown, LaTeX, HTML: `label` under each dataset (`demo HM`), in this table's order; its
  p-value column is `p (LABEL)`;
- CSV: `NAME_mean`, `NAME_std`, `NAME_ci95_low`, `NAME_ci95_high`, `NAME_p`, `NAME_differs`
  (`CSV_STATS`), for every metric;
- JSON: `NAME` in each cell's `mean`, `std`, `values`, `ci95` and `against.p` / `against.differs`;
- figures: `label` on the comparison's axis (`comparison_figure`), `curve.legend` in the bias curve.

No torch here and no import from a higher layer: `clipclap report` stays quick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any


@dataclass(frozen=True)
class CurveStyle:
    """How a metric drawn over the bias grid looks in the bias-curve figure: its legend, line
    style, marker and width (told apart without colour, readable in greyscale)."""

    legend: str
    line: str
    marker: str
    width: float = 1.3


@dataclass(frozen=True)
class Metric:
    """One test metric: a row of `METRIC_TABLE`."""

    name: str
    "Its key in results.json (`test`, `val`, `test_curve`), in JSON reports and CSV columns"
    label: str
    "Its column heading in markdown, LaTeX and HTML tables and on the figures: S, U, HM, ZSL"
    meaning: str
    "What it measures, in words"
    compute: Callable[[Any], float]
    "How it is read off `evaluate.metrics.GZSLResult` (the result at one bias)"
    short_table: bool = False
    "Shown in the short table too (`report --no-su` keeps HM and ZSL)"
    over_grid: Callable[[Any], list[float]] | None = None
    """How its value at every bias of the grid is read off `evaluate.metrics.GridResult`, for
    the metrics results.json keeps as a curve over β (`test_curve`, `val.curve`); None: one value"""
    curve: CurveStyle | None = None
    "Its line in the bias-curve figure (the metrics with `over_grid`)"
    comparison_figure: bool = False
    "Drawn in the methods x datasets comparison of `report --plots` (comparison.png)"
    follows_from: tuple[str, ...] = ()
    "The metrics it is computed from; a results.json that has it must have them too"
    expected: Callable[..., float] | None = None
    "What it must equal given `follows_from`'s values (a hand-edited number is refused)"
    unit: str = "accuracy"
    "Its kind of number (protocol.FILE_UNITS): a fraction in results files, percent in reports"


def harmonic_mean(seen: float, unseen: float) -> float:
    """2SU/(S+U), 0 where both are 0: what a stored HM must equal."""
    return 2 * seen * unseen / (seen + unseen) if seen + unseen > 0 else 0.0


METRIC_TABLE: tuple[Metric, ...] = (
    Metric("seen", "S", "mean per-class accuracy over the seen test classes, among all classes",
           attrgetter("seen"), over_grid=attrgetter("seen"), curve=CurveStyle("S (seen)", "-", "o"),
           comparison_figure=True),
    Metric("unseen", "U", "mean per-class accuracy over the unseen test classes, among all classes",
           attrgetter("unseen"), over_grid=attrgetter("unseen"), curve=CurveStyle("U (unseen)", "--", "s"),
           comparison_figure=True),
    Metric("hm", "HM", "the harmonic mean of S and U", attrgetter("hm"), short_table=True,
           over_grid=attrgetter("hm"), curve=CurveStyle("HM", ":", "^", width=2), comparison_figure=True,
           follows_from=("seen", "unseen"), expected=harmonic_mean),
    Metric("zsl", "ZSL", "mean per-class accuracy over the unseen test classes, among the unseen classes only",
           attrgetter("zsl"), short_table=True, comparison_figure=True),
)
"The test metrics, in the column order of every report format"

METRICS = tuple(m.name for m in METRIC_TABLE)
"Their names, in the table's order"
LABELS = {m.name: m.label for m in METRIC_TABLE}
"Name -> label (S, U, HM, ZSL)"
SHORT_METRICS = tuple(m.name for m in METRIC_TABLE if m.short_table)
"The columns of `report --no-su`"
CURVE_METRICS = tuple(m for m in METRIC_TABLE if m.over_grid is not None)
"The metrics kept as curves over β"
COMPARISON_METRICS = tuple(m.name for m in METRIC_TABLE if m.comparison_figure)
"The metrics drawn in the comparison figure"
CSV_STATS = ("mean", "std", "ci95_low", "ci95_high", "p", "differs")
"A metric's CSV columns, `NAME_STAT` each"


def figures_of(result: Any) -> dict[str, float]:
    """Every metric of a result at one bias (`evaluate.metrics.GZSLResult`), by name: the test
    figures of results.json."""
    return {m.name: m.compute(result) for m in METRIC_TABLE}


def curves_of(grid: Any) -> dict[str, list[float]]:
    """The curve over the bias grid of every metric kept as one (`evaluate.metrics.GridResult`)."""
    return {m.name: m.over_grid(grid) for m in CURVE_METRICS}
