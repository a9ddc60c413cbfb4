"""Results tables like the paper's (methods x datasets: S, U, HM, ZSL) with error bars and paired tests.

Runs that differ only in their seed form one group, reported as mean ± sample standard
deviation with the number of runs; runs of different data (their config.json's digest) are never
one group. No torch here: `clipclap report` stays quick.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipclap_cli.errors import RunError
from clipclap_cli.files import json_text, non_finite_path
from clipclap_cli.protocol import FILE_UNITS, LABELS, METRICS, completed_train_settings, run_name_parts, setting_problem

FORMATS = ("markdown", "latex", "html", "csv", "json")

"What the numbers of a results file are: accuracies as fractions (0-1, the exact values computed)"
PERCENT_UNITS = {"accuracy": "percent", "epoch": "counted from 1"}
"What people read (the console, tables, `evaluate --json`): accuracies in percent"


def as_percent(results: dict[str, Any]) -> dict[str, Any]:
    """A results dict (results.json, `evaluate_models`) with every accuracy in percent: the
    test and validation figures, the bias curves and the per-class accuracies. Betas, class
    counts and epochs stay as they are; `units` says which convention the dict follows."""
    out = json.loads(json.dumps(results))

    def scale(block: dict | None, keys=METRICS) -> None:
        for key in keys:
            if block is None or key not in block:
                continue
            value = block[key]
            block[key] = [100 * v for v in value] if isinstance(value, list) else 100 * value

    scale(out.get("test"))
    scale(out.get("val"))
    scale(out.get("test_curve"))
    scale((out.get("val") or {}).get("curve"))
    for block in (out.get("per_class_accuracy") or {}).values():
        scale(block, list(block))
    scale(out.get("zsl_per_class_recall"), list(out.get("zsl_per_class_recall") or {}))
    out["units"] = PERCENT_UNITS
    return out


@dataclass
class RunResult:
    path: Path
    results: dict[str, Any]
    spec: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    "The whole config.json: its `data_digest` and `store` say what the run was trained on"
    data_tag: str = ""
    "Set by `tag_data` where runs of this dataset were trained on different data"

    @property
    def method(self) -> str:
        parts = run_name_parts(self.spec)
        return self.spec["head"] + (f" ({', '.join(parts)})" if parts else "")

    @property
    def base_dataset(self) -> str:
        split = self.spec["split"]
        return self.spec["dataset"] if split == "cls_split" else f"{self.spec['dataset']} ({split})"

    @property
    def dataset(self) -> str:
        """The table's column: the dataset (and split), and the data it was trained on where the
        runs of that dataset were trained on different data."""
        return self.base_dataset + (f" [{self.data_tag}]" if self.data_tag else "")

    @property
    def data(self) -> str:
        """What the run was trained on: 'data DIGEST' (config.json's digest of every number it
        read: features, label embeddings, labels, split), else 'store PATH' (a run written before
        clipclap recorded the digest), else '' (neither recorded)."""
        digest, store = self.config.get("data_digest"), self.config.get("store")
        return f"data {digest}" if digest else f"store {store}" if store else ""

    def group_key(self) -> str:
        """Everything but the seed (and device): runs with the same key are repeats. The data is
        part of it: runs trained on different data are never seeds of one row."""
        train = {k: v for k, v in completed_train_settings(self.spec["train"]).items() if k not in ("seed", "device")}
        return json.dumps([self.spec["dataset"], self.spec["split"], self.spec["head"], self.spec["params"], train,
                           self.spec.get("legacy_label_order", False), self.data],
                          sort_keys=True)


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


@dataclass
class Cell:
    """One method x dataset entry: per metric mean and std (percent) over `n` seeds. A published
    result (`n` = 0) has the metrics the paper gives, and no std."""

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
    "Per metric, the 95 % confidence interval of the mean over seeds (Student's t), when n >= 2"
    against: dict[str, Any] = field(default_factory=dict)
    """The paired comparison with the reference row of the same dataset (`compare`): its method,
    the seeds both have, and per metric the two-sided p-value of a paired t-test over them and
    whether the two differ at the 5 % level"""


def find_runs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Run folders with results, and those found without results yet (training, interrupted, or
    trained one stage at a time: a table without them says so). Each path is a run or a folder
    searched recursively; a named run must have results."""
    found: list[Path] = []
    pending: list[Path] = []
    for p in paths:
        if not p.exists():
            raise RunError(f"{p}: no such run or folder")
        if (p / "results.json").exists():
            found.append(p)
            continue
        if (p / "config.json").exists():
            raise RunError(f"{p}: the run has no results yet "
                           f"(finish it with `clipclap train`, then `clipclap evaluate {p}`)")
        for run in sorted(c.parent for c in p.rglob("config.json")):
            (found if (run / "results.json").exists() else pending).append(run)
    if not found:
        hint = (f"{len(pending)} run(s) there have no results yet: finish them with `clipclap train`"
                if pending else "train with `clipclap train DATASET`")
        raise RunError(f"no evaluated runs under {', '.join(map(str, paths))} ({hint})")
    return list(dict.fromkeys(found)), list(dict.fromkeys(pending))


def load_run(path: Path) -> RunResult:
    """A run's results, config and training log, checked: a RunError names the file and what is
    wrong, so that no damaged number reaches a table or a figure."""
    results, config = _read_json(path, "results.json"), _read_json(path, "config.json")
    if problem := (results_problem(results) or figures_problem(results) or config_problem(config)
                   or training_log_problem(path)):
        raise RunError(f"{path}: {problem}")
    run = RunResult(path, results, config["spec"], config)
    try:  # the row's name and group, from settings of any shape a hand edit left
        run.method, run.group_key()
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{path}: config.json: the spec's settings cannot be read ({type(e).__name__}: {e})") from None
    return run


def _read_json(path: Path, name: str) -> Any:
    try:
        return json.loads((path / name).read_text(encoding="utf-8"))
    except OSError as e:
        raise RunError(f"{path}: {name} cannot be read ({e.strerror or e})") from None
    except ValueError as e:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
        raise RunError(f"{path}: {name} is not valid JSON ({e})") from None


def _shown(value: Any) -> str:  # a value as an error line shows it: its repr, cut short
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."


def _finite(value: Any, fraction: bool = False) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (not fraction or 0 <= value <= 1)


#: How far a stored HM may be from 2SU/(S+U): the evaluation adds 1e-12 to the denominator and
#: rounds through float32; a hand-edited HM is off by far more.
HM_TOLERANCE = 1e-6


def results_problem(results: Any) -> str | None:
    """What is wrong with a results.json's test figures, or None: each metric must be a number
    (a fraction from 0 to 1, finite) and HM must follow from S and U."""
    test = results.get("test") if isinstance(results, dict) else None
    if not isinstance(test, dict):
        return "results.json has no 'test' figures"
    units = results.get("units", FILE_UNITS)  # files from before `units` hold fractions
    if units != FILE_UNITS:
        return f"results.json: units are {units!r}, not {FILE_UNITS!r} (a file of `evaluate --json`, in percent?)"
    for metric in METRICS:
        value = test.get(metric)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"results.json: test {metric} is {value!r}, not a number"
        if not math.isfinite(value) or not 0 <= value <= 1:
            return f"results.json: test {metric} is {value!r}, outside 0..1 (a fraction)"
    s, u, hm = test["seen"], test["unseen"], test["hm"]
    expected = 2 * s * u / (s + u) if s + u > 0 else 0.0
    if abs(hm - expected) > HM_TOLERANCE:
        return f"results.json: test hm {hm!r} does not follow from seen {s!r} and unseen {u!r} ({expected:.6f})"
    seed = results.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return f"results.json: seed is {seed!r}, not an integer"
    return None


def figures_problem(results: dict[str, Any]) -> str | None:
    """What is wrong with what the figures draw from a results.json, or None: the chosen β, the
    S/U/HM curve over β (lists of one length) and the per-class accuracies (fractions)."""
    beta = results["test"].get("beta")
    if not _finite(beta):
        return f"results.json: test beta is {_shown(beta)}, not a finite number"
    curve = results.get("test_curve")
    if not isinstance(curve, dict):
        return f"results.json: test_curve (the S, U and HM curve over β) is {_shown(curve)}"
    for key, fraction, what in (("beta", False, "finite numbers"), ("seen", True, "fractions"),
                                ("unseen", True, "fractions"), ("hm", True, "fractions")):
        values = curve.get(key)
        if not isinstance(values, list) or not values or not all(_finite(v, fraction) for v in values):
            return f"results.json: test_curve {key} is not a list of {what}"
    if len({len(curve[k]) for k in ("beta", "seen", "unseen", "hm")}) > 1:
        return "results.json: test_curve's beta, seen, unseen and hm differ in length"
    acc = results.get("per_class_accuracy")
    if not isinstance(acc, dict):
        return f"results.json: per_class_accuracy is {_shown(acc)}"
    for part in ("seen", "unseen"):
        block = acc.get(part)
        if not isinstance(block, dict):
            return f"results.json: per_class_accuracy {part} is {_shown(block)}"
        bad = next((name for name, v in block.items() if not _finite(v, fraction=True)), None)
        if bad is not None:
            return f"results.json: per_class_accuracy {part} {bad!r} is {_shown(block[bad])}, not a fraction"
    run_format = results.get("run_format")
    if run_format is not None and (isinstance(run_format, bool) or not isinstance(run_format, int)):
        return f"results.json: run_format is {_shown(run_format)}, not an integer"
    return None


def config_problem(config: Any) -> str | None:
    """What is wrong with config.json's spec, data digest and store (which keep runs of different
    data apart), or None."""
    if not isinstance(config, dict):
        return "config.json has no run spec"
    for key in ("data_digest", "store"):
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            return f"config.json: {key} is {_shown(value)}, not text"
    return spec_problem(config.get("spec"))


def training_log_problem(path: Path) -> str | None:
    """What is wrong with a run's training log (stage1/ and stage2/ metrics.jsonl, its training
    curves), or None: every line JSON (not cut short), each epoch a whole number, its total loss
    (where the head trains) and validation HM finite. A run without a log has no curves drawn."""
    trained = None
    for stage in (1, 2):
        f = path / f"stage{stage}" / "metrics.jsonl"
        if not f.exists():
            continue
        name = f"stage{stage}/metrics.jsonl"
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
        except UnicodeDecodeError:
            return f"{name} is not text (not UTF-8)"
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                return f"{name} line {number} is not JSON (cut short?)"
            problem = _epoch_problem(row)
            if problem:
                return f"{name} line {number}: {problem}"
            has_total = "total" in row["losses"]
            if trained is not None and has_total != trained:
                return f"{name} line {number}: {'a' if has_total else 'no'} total loss, unlike the epochs before"
            trained = has_total
    return None


def _epoch_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"{_shown(row)} is not an epoch's record"
    epoch, best = row.get("epoch"), row.get("best_epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return f"epoch is {_shown(epoch)}, not a whole number"
    if best is not None and (isinstance(best, bool) or not isinstance(best, int)):
        return f"best_epoch is {_shown(best)}, not a whole number"
    losses, val = row.get("losses"), row.get("val")
    if not isinstance(losses, dict):
        return f"losses is {_shown(losses)}"
    if "total" in losses and not _finite(losses["total"]):
        return f"total loss is {_shown(losses['total'])}, not a finite number"
    if not isinstance(val, dict) or not _finite(val.get("hm")):
        return f"validation hm is {_shown(val.get('hm') if isinstance(val, dict) else val)}, not a finite number"
    return None


def spec_problem(spec: Any) -> str | None:
    """What config.json's spec lacks for a report row, or None."""
    if not isinstance(spec, dict):
        return "config.json has no run spec"
    for key, kind in (("dataset", str), ("split", str), ("head", str), ("params", dict), ("train", dict),
                      ("variant", dict | None), ("protocol_defaults", dict | None)):
        if not isinstance(spec.get(key), kind):
            return f"config.json: spec {key} is {spec.get(key)!r}"
    seed = spec["train"].get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        return f"config.json: spec train.seed is {seed!r}, not an integer"
    for key, value in spec["train"].items():  # protocol's one check of each setting's type and range
        problem = setting_problem(key, value)
        if problem:
            return f"config.json: spec train.{key}: {problem}"
    culprit = non_finite_path(spec)
    return f"config.json: spec {culprit} is not a finite number" if culprit else None


def load_runs(paths: list[Path]) -> tuple[list[RunResult], list[str]]:
    """The runs at `paths` that load and pass the checks, and one line for each that does not
    (the report leaves those out and says so, rather than failing whole or showing a bad number)."""
    runs, skipped = [], []
    for path in paths:
        try:
            runs.append(load_run(path))
        except RunError as e:
            skipped.append(str(e))
    return runs, skipped


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
        values = {m: [100 * r.results["test"][m] for r in members] for m in METRICS}
        cells.append(Cell(
            method, first.dataset, len(members),
            {m: statistics.fmean(v) for m, v in values.items()},
            {m: statistics.stdev(v) if len(v) > 1 else 0.0 for m, v in values.items()},
            sorted(run_seed(r) for r in members),
            [str(r.path) for r in members],
            first.spec["head"],
            [str(r.path) for r in replaced],
            first.data,
            first.data_tag,
            sorted({str(r.config.get("store")) for r in members if r.config.get("store")}),
            {m: {str(run_seed(r)): v for r, v in zip(members, vs, strict=True)} for m, vs in values.items()},
            {m: confidence_interval(v) for m, v in values.items() if len(v) > 1},
        ))
    return cells


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
    """Fill each cell's `against`: the paired t-test, per metric, of its seeds against the same
    seeds of the dataset's row `against` (a method name, e.g. `clipclap`), where they share at
    least two seeds. The reference row itself and the paper's rows are left alone."""
    reference = {c.dataset: c for c in cells if c.method == against and c.n}
    for cell in cells:
        ref = reference.get(cell.dataset)
        if ref is None or cell is ref or not cell.n:
            continue
        shared = sorted(set(cell.values["hm"]) & set(ref.values["hm"]), key=int)
        cell.against = {"method": against, "shared_seeds": [int(s) for s in shared], "p": {}, "differs": {}}
        if len(shared) < 2:
            continue
        for m in METRICS:
            p = paired_p_value([cell.values[m][s] for s in shared], [ref.values[m][s] for s in shared])
            if math.isfinite(p):  # a test scipy cannot decide is left out, not printed as nan
                cell.against["p"][m], cell.against["differs"][m] = p, p < SIGNIFICANCE
    return cells


def run_seed(run: RunResult) -> int:
    return run.results.get("seed", run.spec["train"]["seed"])


def _one_run_per_seed(group: list[RunResult]) -> tuple[list[RunResult], list[RunResult]]:
    """The runs of a group (same dataset, split, head and settings) that count, one per seed: a
    seed trained twice counts once, by its newest results (the older run is a repeat, not a new
    sample); and the runs left out."""
    newest: dict[int, RunResult] = {}
    for run in sorted(group, key=lambda r: (r.path / "results.json").stat().st_mtime_ns):
        newest[run_seed(run)] = run
    kept = [newest[seed] for seed in sorted(newest)]
    return kept, [r for r in group if all(r is not k for k in kept)]


PAPER = " (paper)"


def with_published(cells: list[Cell], published: dict[str, dict[str, dict[str, float]]]) -> list[Cell]:
    """`cells` and the published results of their datasets (`published[dataset][head]`, percent)
    as rows 'HEAD (paper)', each right below the rows of the same head when the table has some."""
    paper: dict[str, list[Cell]] = {}
    columns = {c.dataset: c.dataset.removesuffix(f" [{c.data_tag}]") if c.data_tag else c.dataset for c in cells}
    for dataset, base in columns.items():  # a dataset trained on several data: the paper's row in each column
        for head, values in published.get(base, {}).items():
            paper.setdefault(head, []).append(Cell(head + PAPER, dataset, 0, dict(values), {}, head=head))
    out: list[Cell] = []
    for head in dict.fromkeys(c.head for c in cells):
        out += [c for c in cells if c.head == head] + paper.pop(head, [])
    return out + [c for rows in paper.values() for c in rows]


def layout(cells: list[Cell]):
    methods = list(dict.fromkeys(c.method for c in cells))
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    by = {(c.method, c.dataset): c for c in cells}
    return methods, datasets, by


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise RunError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


SAME = "†"
"The mark of a value that does not differ significantly from the reference row's"


def format_cell(cell: Cell | None, metric: str, pm: str = " ± ", mark: str = SAME) -> str:
    """One table entry: 'mean ± std' (the mean alone for one seed), `mark` where the row does not
    differ from the reference row; '–' where the cell or its metric is missing."""
    if cell is None or metric not in cell.mean:
        return "–"
    same = mark if cell.against.get("differs", {}).get(metric) is False else ""
    if cell.n <= 1:
        return f"{cell.mean[metric]:.2f}{same}"
    return f"{cell.mean[metric]:.2f}{pm}{cell.std[metric]:.2f}{same}"


def table_note(cells: list[Cell]) -> str:
    """What the table's numbers are: the caption every wide format prints under it."""
    counts = sorted({c.n for c in cells if c.n})
    note = (f"mean ± std over {'/'.join(map(str, counts))} seeds" if counts != [1] else "one seed per entry")
    if any(c.replaced for c in cells):
        note += "; a seed trained twice counts once, by its newest run"
    if any(c.n == 0 for c in cells):
        note += f"; '{PAPER.strip()}': the published results"
    if any(c.data_tag for c in cells):
        note += ("; [data ...]: runs of one dataset trained on different data (the data digest in their "
                 "config.json) are separate columns, never averaged")
    compared = [c for c in cells if c.against.get("p")]
    if any(differs is False for c in compared for differs in c.against["differs"].values()):
        note += (f"; {SAME} no significant difference from {compared[0].against['method']} (paired t-test over the "
                 f"seeds both have, p >= {SIGNIFICANCE})")
    elif compared:
        note += f"; every compared row differs significantly from {compared[0].against['method']} (p < {SIGNIFICANCE})"
    return note


def format_p(p: float) -> str:
    """A p-value as people read it: three decimals, or scientific notation below 0.001."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def significance_rows(cells: list[Cell], metrics: tuple[str, ...]) -> list[list[str]]:
    """The paired tests as table rows: method, dataset, the seeds both rows have, and per metric
    the p-value, marked SAME where the row does not differ from the reference row."""
    rows = []
    for c in cells:
        p, differs = c.against.get("p"), c.against.get("differs", {})
        if p:
            rows.append([c.method, c.dataset, " ".join(map(str, c.against["shared_seeds"]))]
                        + [format_p(p[m]) + ("" if differs[m] else SAME) for m in metrics])
    return rows


def significance_title(cells: list[Cell]) -> str:
    reference = next(c.against["method"] for c in cells if c.against.get("p"))
    return (f"Paired t-tests against {reference}: two-sided p-values over the seeds both rows have "
            f"({SAME}: p >= {SIGNIFICANCE}, no significant difference)")


def render(cells: list[Cell], fmt: str, metrics: tuple[str, ...] = METRICS) -> str:
    """The table in one of FORMATS: markdown, latex and html wide (methods x datasets, the
    `metrics` columns in METRICS order in each), csv and json one row per cell with every metric,
    its 95 % interval and p-value. Markdown and HTML add the paired tests as a second table."""
    check_format(fmt)
    metrics = tuple(m for m in METRICS if m in metrics)  # one column order in every format
    if fmt == "json":
        return json_text([c.__dict__ for c in cells], what="the report")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["method", "dataset", "n", "seeds", "against", "shared_seeds"]
                   + [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "ci95_low", "ci95_high", "p", "differs")])
        for c in cells:
            row = [c.method, c.dataset, c.n, " ".join(map(str, c.seeds)), c.against.get("method", ""),
                   " ".join(map(str, c.against.get("shared_seeds", [])))]
            for m in METRICS:
                ci, p = c.ci95.get(m), c.against.get("p", {}).get(m)
                differs = c.against.get("differs", {}).get(m)
                row += [f"{c.mean[m]:.4f}" if m in c.mean else "", f"{c.std[m]:.4f}" if m in c.std else "",
                        f"{ci[0]:.4f}" if ci else "", f"{ci[1]:.4f}" if ci else "", f"{p:.4g}" if p is not None else "",
                        "" if differs is None else str(differs).lower()]
            w.writerow(row)
        return buf.getvalue()
    if fmt == "html":
        from clipclap_cli.report.html_page import page

        return page(cells, metrics)
    methods, datasets, by = layout(cells)
    note = table_note(cells)
    if fmt == "markdown":
        head = "| Method | " + " | ".join(f"{d} {LABELS[m]}" for d in datasets for m in metrics) + " |"
        sep = "|---|" + "---:|" * (len(datasets) * len(metrics))
        rows = ["| " + m + " | " + " | ".join(format_cell(by.get((m, d)), x) for d in datasets for x in metrics) + " |"
                for m in methods]
        text = [head, sep, *rows, "", f"Percent; {note}."]
        tests = significance_rows(cells, metrics)
        if tests:
            text += ["", significance_title(cells) + ":", "",
                     "| Method | Dataset | Seeds | " + " | ".join(f"p ({LABELS[m]})" for m in metrics) + " |",
                     "|---|---|---|" + "---:|" * len(metrics),
                     *("| " + " | ".join(row) + " |" for row in tests)]
        return "\n".join(text) + "\n"
    k = len(metrics)
    lines = [r"% needs \usepackage{booktabs}", r"\begin{tabular}{l" + ("c" * k) * len(datasets) + "}", r"\toprule",
             "Method & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_tex(d)}}}" for d in datasets) + r" \\",
             " & " + " & ".join(LABELS[m] for _ in datasets for m in metrics) + r" \\", r"\midrule"]
    for m in methods:
        lines.append(_tex(m) + " & " + " & ".join(format_cell(by.get((m, d)), x, r" $\pm$ ", r"$^\dagger$")
                                                   for d in datasets for x in metrics) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% percent; {note}"]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "|": r"\textbar{}"}


def _tex(s: str) -> str:
    """`s` as LaTeX text: every character LaTeX treats specially escaped."""
    return "".join(_TEX.get(ch, ch) for ch in s)
