"""Results in percent, as people read them (the console, tables, `evaluate --json`): results
files hold the metrics as fractions (protocol.FILE_UNITS), the exact values computed."""

from __future__ import annotations

import json
from typing import Any

from clipclap_cli.metric_table import METRIC_TABLE

PERCENT_UNITS = {"accuracy": "percent", "epoch": "counted from 1"}
"What people read (the console, tables, `evaluate --json`): accuracies in percent"

_ACCURACIES = tuple(m.name for m in METRIC_TABLE if m.unit == "accuracy")


def as_percent(results: dict[str, Any]) -> dict[str, Any]:
    """A results dict (results.json, `evaluate_models`) with every accuracy in percent: the
    test and validation figures, the bias curves and the per-class accuracies. Betas, class
    counts and epochs stay as they are; `units` says which convention the dict follows."""
    out = json.loads(json.dumps(results))

    def scale(block: dict | None, keys=_ACCURACIES) -> None:
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
