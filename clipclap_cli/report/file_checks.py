"""What is wrong with a run's files before any of their numbers reaches a table or a figure.

Each check returns one line naming the file and the problem, or None: `report` leaves such a run
out with that line rather than failing whole or showing a damaged number. The metrics checked
are metric_table's: each one a results.json has must be a finite fraction (and follow from the
metrics it is computed from); one it lacks (a run written before the metric was added) is a
cell marked missing, not a reason to leave the run out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from clipclap_cli.files import non_finite_path
from clipclap_cli.metric_table import CURVE_METRICS, METRIC_TABLE, METRICS
from clipclap_cli.protocol import FILE_UNITS, setting_problem
from clipclap_cli.runs.files import METRICS as TRAINING_LOG
from clipclap_cli.runs.files import stage_file, stage_name

#: How far a stored HM may be from 2SU/(S+U): the evaluation adds 1e-12 to the denominator and
#: rounds through float32; a hand-edited HM is off by far more.
HM_TOLERANCE = 1e-6


def shown(value: Any) -> str:
    """A value as an error line shows it: its repr, cut short."""
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."


def _finite(value: Any, fraction: bool = False) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (not fraction or 0 <= value <= 1)


def _number_problem(metric: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"results.json: test {metric} is {value!r}, not a number"
    if not math.isfinite(value) or not 0 <= value <= 1:
        return f"results.json: test {metric} is {value!r}, outside 0..1 (a fraction)"
    return None


def results_problem(results: Any) -> str | None:
    """What is wrong with a results.json's test figures, or None: each metric of the table that
    it has must be a number (a fraction from 0 to 1, finite), and one computed from others (HM
    from S and U) must have them and follow from them. A metric it lacks is reported missing."""
    test = results.get("test") if isinstance(results, dict) else None
    if not isinstance(test, dict):
        return "results.json has no 'test' figures"
    units = results.get("units", FILE_UNITS)  # files from before `units` hold fractions
    if units != FILE_UNITS:
        return f"results.json: units are {units!r}, not {FILE_UNITS!r} (a file of `evaluate --json`, in percent?)"
    present = [m for m in METRIC_TABLE if m.name in test]
    if not present:
        return f"results.json: test has none of the metrics ({', '.join(METRICS)})"
    needed = {name for m in present for name in m.follows_from}
    for metric in METRIC_TABLE:  # in the table's order: the first problem is named
        if metric.name in test or metric.name in needed:
            problem = _number_problem(metric.name, test.get(metric.name))
            if problem:
                return problem
    for metric in present:
        if metric.expected is not None:
            sources = [test[name] for name in metric.follows_from]
            expected, value = metric.expected(*sources), test[metric.name]
            if abs(value - expected) > HM_TOLERANCE:
                given = " and ".join(f"{name} {v!r}" for name, v in zip(metric.follows_from, sources, strict=True))
                return f"results.json: test {metric.name} {value!r} does not follow from {given} ({expected:.6f})"
    seed = results.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return f"results.json: seed is {seed!r}, not an integer"
    return None


def figures_problem(results: dict[str, Any]) -> str | None:
    """What is wrong with what the figures draw from a results.json, or None: the chosen β, the
    curve over β of each metric kept as one that the file has (lists of one length) and the
    per-class accuracies (fractions)."""
    beta = results["test"].get("beta")
    if not _finite(beta):
        return f"results.json: test beta is {shown(beta)}, not a finite number"
    curve = results.get("test_curve")
    if not isinstance(curve, dict):
        return f"results.json: test_curve (the S, U and HM curve over β) is {shown(curve)}"
    keys = ["beta"] + [m.name for m in CURVE_METRICS if m.name in results["test"] or m.name in curve]
    for key in keys:
        fraction = key != "beta"
        values = curve.get(key)
        if not isinstance(values, list) or not values or not all(_finite(v, fraction) for v in values):
            return f"results.json: test_curve {key} is not a list of {'fractions' if fraction else 'finite numbers'}"
    if len({len(curve[k]) for k in keys}) > 1:
        return f"results.json: test_curve's {', '.join(keys[:-1])} and {keys[-1]} differ in length"
    acc = results.get("per_class_accuracy")
    if not isinstance(acc, dict):
        return f"results.json: per_class_accuracy is {shown(acc)}"
    for part in ("seen", "unseen"):
        block = acc.get(part)
        if not isinstance(block, dict):
            return f"results.json: per_class_accuracy {part} is {shown(block)}"
        bad = next((name for name, v in block.items() if not _finite(v, fraction=True)), None)
        if bad is not None:
            return f"results.json: per_class_accuracy {part} {bad!r} is {shown(block[bad])}, not a fraction"
    run_format = results.get("run_format")
    if run_format is not None and (isinstance(run_format, bool) or not isinstance(run_format, int)):
        return f"results.json: run_format is {shown(run_format)}, not an integer"
    return None


def config_problem(config: Any) -> str | None:
    """What is wrong with config.json's spec, data digest and store (which keep runs of different
    data apart), or None."""
    if not isinstance(config, dict):
        return "config.json has no run spec"
    for key in ("data_digest", "store"):
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            return f"config.json: {key} is {shown(value)}, not text"
    return spec_problem(config.get("spec"))


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


def training_log_problem(path: Path) -> str | None:
    """What is wrong with a run's training log (stage1/ and stage2/ metrics.jsonl, its training
    curves), or None: every line JSON (not cut short), each epoch a whole number, its total loss
    (where the head trains) and validation HM finite. A run without a log has no curves drawn."""
    trained = None
    for stage in (1, 2):
        f = stage_file(path, stage, TRAINING_LOG)
        if not f.exists():
            continue
        name = stage_name(stage, TRAINING_LOG)
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
        return f"{shown(row)} is not an epoch's record"
    epoch, best = row.get("epoch"), row.get("best_epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return f"epoch is {shown(epoch)}, not a whole number"
    if best is not None and (isinstance(best, bool) or not isinstance(best, int)):
        return f"best_epoch is {shown(best)}, not a whole number"
    losses, val = row.get("losses"), row.get("val")
    if not isinstance(losses, dict):
        return f"losses is {shown(losses)}"
    if "total" in losses and not _finite(losses["total"]):
        return f"total loss is {shown(losses['total'])}, not a finite number"
    if not isinstance(val, dict) or not _finite(val.get("hm")):
        return f"validation hm is {shown(val.get('hm') if isinstance(val, dict) else val)}, not a finite number"
    return None
