"""Statistics over seeds: the 95 % confidence interval of a row's mean, and the paired t-test of
each row against the reference row of its column (scipy, imported when first needed), with what
each rests on: an interval over fewer than FEW_SEEDS seeds, a test over fewer than FEW_SEEDS
shared seeds or against a row without spread is marked in every format (`report/tables.py`)."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from clipclap_cli.metric_table import METRICS

if TYPE_CHECKING:
    from clipclap_cli.report.grouping import Cell

SIGNIFICANCE = 0.05
"The level at which a row is marked as not differing from the reference row"
FEW_SEEDS = 3
"An interval or a paired test over fewer seeds than this is marked: one degree of freedom, little power"
RANGE = (0.0, 100.0)
"Where every metric lies (percent): an interval is cut to it"

TEST_NOTE = ("a paired t-test over seeds tells whether two rows differ by more than their results vary from "
             "seed to seed, on this one dataset, split and set of classes; it cannot tell whether the "
             "difference holds on other data, splits or class draws, and p >= 0.05 is no evidence that "
             "the rows are equal")
"What the paired tests can and cannot tell: every format that prints them says it"


def confidence_interval(values: list[float], level: float = 0.95, bounds: tuple[float, float] = RANGE) -> list[float]:
    """The `level` confidence interval of the mean of `values` (n >= 2), Student's t
    (scipy.stats.t.interval: mean ± t(n-1) s / sqrt(n)), cut to `bounds`, the metric's range:
    with two seeds the t quantile is 12.7 and the raw interval can reach below 0 % or above 100 %."""
    from scipy import stats

    n, mean = len(values), statistics.fmean(values)
    sem = statistics.stdev(values) / math.sqrt(n)
    if sem == 0:  # no spread: the interval is the mean itself (scipy would answer nan)
        return [min(max(mean, bounds[0]), bounds[1])] * 2
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return [max(float(low), bounds[0]), min(float(high), bounds[1])]


def no_spread(values: list[float]) -> bool:
    """The same value on every seed (a training-free head, or seeds that do not change a run)."""
    return len(set(values)) == 1


def paired_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of a paired t-test (scipy.stats.ttest_rel) of `a` against `b`, paired by
    position. Identical pairs give 1.0 (no difference at all, where the t statistic is 0/0)."""
    from scipy import stats

    if all(x == y for x, y in zip(a, b, strict=True)):
        return 1.0
    with warnings.catch_warnings():  # differences (nearly) constant: the report marks such a test, not scipy
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


DEFAULT_AGAINST = "clipclap"
"The head every row is compared with when --against names none"


def reference_rows(cells: list[Cell], against: str | None) -> tuple[dict[str, Cell], list[str]]:
    """Per dataset, the row `against` names: the row of that exact name (`clipclap (epochs=3)`),
    else the one row of the head of that name (`clipclap` matches 'clipclap (epochs=3,
    batches-per-epoch=30)' where that is the only clipclap row of the dataset). `against` None is
    the default, DEFAULT_AGAINST. A name that matches no row, or several rows of one dataset, is
    a RunError listing the rows when it was given; for the default, one line each (no tests) in
    the list returned, where the table has rows to compare."""
    from clipclap_cli.errors import RunError

    name = DEFAULT_AGAINST if against is None else against
    rows = [c for c in cells if c.n]  # the paper's rows (n = 0) have no seeds to pair
    reference, ambiguous = {}, {}
    for dataset in dict.fromkeys(c.dataset for c in rows):
        here = [c for c in rows if c.dataset == dataset]
        exact = [c for c in here if c.method == name]
        of_head = [c for c in here if c.head == name]
        picked = exact or of_head
        if len(picked) == 1:
            reference[dataset] = picked[0]
        elif picked:
            ambiguous[dataset] = picked
    methods = list(dict.fromkeys(c.method for c in rows))
    listed = "; ".join(methods)
    lines = []
    if ambiguous:
        dataset, picked = next(iter(ambiguous.items()))
        problem = (f"--against {name} matches {len(picked)} rows of {dataset} "
                   f"({'; '.join(c.method for c in picked)}): name one of them")
        if against is not None:
            raise RunError(problem)
        lines.append(f"no paired tests on {', '.join(ambiguous)}: {problem}")
    if not reference and not ambiguous:
        if against is not None:
            raise RunError(f"--against {name} matches no row of the table; the rows: {listed}")
        if len(methods) > 1:
            lines.append(f"no paired tests: no {name} row to compare with (--against names one of: {listed})")
    return reference, lines


def compare(cells: list[Cell], against: str | None = None, say: Callable[[str], None] | None = None) -> list[Cell]:
    """Fill each cell's `against`: the paired t-test, per metric both rows have, of its seeds
    against the same seeds of the dataset's reference row (`reference_rows`: a method or head
    name, e.g. `clipclap`), where they share at least two seeds. The reference row itself and the
    paper's rows are left alone. Why a table that could have tests has none goes to `say`, one
    line each."""
    reference, lines = reference_rows(cells, against)
    untested = []
    for cell in cells:
        ref = reference.get(cell.dataset)
        if ref is None or cell is ref or not cell.n:
            continue
        shared = sorted(set(cell.seeds) & set(ref.seeds))
        cell.against = {"method": ref.method, "shared_seeds": shared, "p": {}, "differs": {}}
        if len(shared) < 2:
            untested.append(f"{cell.method} on {cell.dataset}")
            continue
        cell.against |= {"few_seeds": len(shared) < FEW_SEEDS, "no_spread": {}, "caveats": {}, "note": TEST_NOTE}
        for m in METRICS:
            if m not in cell.values or m not in ref.values:
                continue  # a metric one of the rows lacks (runs from before it was computed)
            a, b = [cell.values[m][str(s)] for s in shared], [ref.values[m][str(s)] for s in shared]
            p = paired_p_value(a, b)
            if not math.isfinite(p):  # a test scipy cannot decide is left out, not printed as nan
                continue
            cell.against["p"][m], cell.against["differs"][m] = p, p < SIGNIFICANCE
            flat = [row.method for row, values in ((cell, a), (ref, b)) if no_spread(values)]
            if flat:
                cell.against["no_spread"][m] = flat
            if caveat := test_caveat(len(shared), flat):
                cell.against["caveats"][m] = caveat
    if untested:
        lines.append(f"no paired test of {', '.join(untested)}: it shares fewer than 2 seeds with its reference row "
                     "(a paired t-test needs two; train more seeds, e.g. --seeds 3)")
    for line in lines if say is not None else ():
        say(line)
    return cells


def test_caveat(shared: int, flat: list[str]) -> str:
    """What a paired test over `shared` seeds cannot tell, where it rests on too little: fewer than
    FEW_SEEDS shared seeds, or rows (`flat`) whose value is the same on every seed; '' otherwise."""
    said = []
    if shared < FEW_SEEDS:
        said.append(f"over {shared} shared seeds only (1 degree of freedom): little power, a hint at most")
    if len(flat) == 2:
        said.append("neither row varies over the seeds: the test has no spread to weigh the difference "
                    "against and tells nothing (p is 1 where the rows are equal, 0 where they differ)")
    elif flat:
        said.append(f"{flat[0]} has the same value on every seed (no spread, e.g. a training-free head): the test "
                    "only asks whether the other row's seeds lie around that one value")
    return "; ".join(said)
