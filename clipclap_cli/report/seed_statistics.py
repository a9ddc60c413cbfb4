"""Statistics over seeds: the 95 % confidence interval of a row's mean, and the paired t-test of
each row against the reference row of its column (scipy, imported when first needed)."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

from clipclap_cli.metric_table import METRICS

if TYPE_CHECKING:
    from clipclap_cli.report.grouping import Cell

SIGNIFICANCE = 0.05
"The level at which a row is marked as not differing from the reference row"


def confidence_interval(values: list[float], level: float = 0.95) -> list[float]:
    """The `level` confidence interval of the mean of `values` (n >= 2): mean ± t(n-1) s / sqrt(n)."""
    from scipy import stats

    n, mean = len(values), statistics.fmean(values)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return [mean - half, mean + half]


def paired_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of a paired t-test (scipy.stats.ttest_rel) of `a` against `b`, paired by
    position. Identical pairs give 1.0 (no difference at all, where the t statistic is 0/0)."""
    from scipy import stats

    if all(x == y for x, y in zip(a, b, strict=True)):
        return 1.0
    return float(stats.ttest_rel(a, b).pvalue)


def compare(cells: list[Cell], against: str) -> list[Cell]:
    """Fill each cell's `against`: the paired t-test, per metric both rows have, of its seeds
    against the same seeds of the dataset's row `against` (a method name, e.g. `clipclap`),
    where they share at least two seeds. The reference row itself and the paper's rows are left
    alone."""
    reference = {c.dataset: c for c in cells if c.method == against and c.n}
    for cell in cells:
        ref = reference.get(cell.dataset)
        if ref is None or cell is ref or not cell.n:
            continue
        shared = sorted(set(cell.seeds) & set(ref.seeds))
        cell.against = {"method": against, "shared_seeds": shared, "p": {}, "differs": {}}
        if len(shared) < 2:
            continue
        for m in METRICS:
            if m not in cell.values or m not in ref.values:
                continue  # a metric one of the rows lacks (runs from before it was computed)
            p = paired_p_value([cell.values[m][str(s)] for s in shared], [ref.values[m][str(s)] for s in shared])
            if math.isfinite(p):  # a test scipy cannot decide is left out, not printed as nan
                cell.against["p"][m], cell.against["differs"][m] = p, p < SIGNIFICANCE
    return cells
