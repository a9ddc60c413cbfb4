"""A run's config.json: read and checked whole (`load_spec`), so that a hand-edited field of the
wrong type or out of range is one line naming the file and the field, before anything is written."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

import torch

from clipclap_cli.errors import RunError
from clipclap_cli.protocol import SettingError, TrainSettings, setting_problem
from clipclap_cli.runs.files import CONFIG
from clipclap_cli.runs.run_format import RUN_FORMAT
from clipclap_cli.runs.spec import RunSpec


def read_json(path: Path) -> Any:
    """A run's JSON file; a damaged one is a RunError naming it, not a traceback."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is damaged (not valid JSON: {e})") from None


def load_spec(path: Path) -> tuple[RunSpec, dict]:
    """A run's spec and its config.json as recorded, the whole file checked (`config_problem`):
    a field a run cannot use is one RunError naming the file and the field, before any write."""
    config = path / CONFIG
    if not config.exists():
        raise RunError(f"{path}: not a clipclap run (no {CONFIG})")
    raw = read_json(config)
    problem = config_problem(raw)
    if problem is not None:
        made_by = raw.get("clipclap_version", "?") if isinstance(raw, dict) else "?"
        raise RunError(f"{config} is not one this clipclap can read ({problem}); it was written by clipclap "
                       f"{made_by}, or edited since")
    s = raw["spec"]
    spec = RunSpec(s["dataset"], s["split"], s["head"], s["params"], s["dims"], TrainSettings(**s["train"]),
                   s.get("variant", {}), s.get("legacy_label_order", False), s.get("protocol_defaults", {}),
                   raw.get("settings_sources", {}))
    return spec, raw


# ---------------------------------------------------------------- what a run's config.json must hold

_INT64 = 2**63 - 1


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "expected a non-empty string"


def _digest(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "expected a string"


def _table(value: Any) -> str | None:
    return None if isinstance(value, dict) else "expected a JSON object"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _whole(value: Any, least: int = 1) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected a whole number of at least {least}"
    if value < least:
        return f"must be at least {least}"
    return None if value <= _INT64 else "is too large"


def _threads(value: Any) -> str | None:
    return _whole(value) or setting_problem("threads", value)  # the command line's bounds of --threads


def _run_format(value: Any) -> str | None:
    problem = _whole(value)
    if problem is None and value > RUN_FORMAT:
        return f"run format {value} is newer than this clipclap reads ({RUN_FORMAT}); update clipclap"
    return problem


def _sources(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return None if ok else "expected a JSON object of strings"


def _dims(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "expected a JSON object"
    for key in ("audio", "video"):
        if key not in value:
            return f"{key} is missing"
        if _whole(value[key]) is not None:
            return f"{key}: {_whole(value[key])}"
    parts = value.get("text_parts")
    ok = isinstance(parts, list) and all(
        isinstance(p, list) and len(p) == 2 and _text(p[0]) is None and _whole(p[1]) is None for p in parts)
    return None if ok else "text_parts: expected a list of [name, width] pairs"


#: config.json's fields: (what checks the value, whether a run needs it); others are kept unread
_CONFIG_FIELDS = {
    "spec": (_table, True), "store": (_text, True), "data_digest": (_digest, False), "threads": (_threads, False),
    "created": (_text, False), "clipclap_version": (_text, False), "torch_version": (_text, False),
    "run_format": (_run_format, False), "settings_sources": (_sources, False),
}
_SPEC_FIELDS = {
    "dataset": (_text, True), "split": (_text, True), "head": (_text, True), "params": (_table, True),
    "dims": (_dims, True), "train": (_table, True), "variant": (_table, False), "legacy_label_order": (_flag, False),
    "protocol_defaults": (_table, False),
}


def _fields_problem(data: dict, fields: dict, where: str) -> str | None:
    for key, (check, required) in fields.items():
        if key not in data:
            if required:
                return f"{where}{key}: missing"
            continue
        problem = check(data[key])
        if problem is not None:
            return f"{where}{key}{_shown(data[key])}: {problem}"
    return None


def _shown(value: Any) -> str:
    """` = VALUE` for a value short enough to quote in a message, else nothing."""
    if isinstance(value, (dict, list)):
        return ""
    text = json.dumps(value)
    return f" = {text if len(text) <= 40 else text[:37] + '...'}"


def _setting_type_problem(hint: Any, value: Any) -> str | None:
    """Whether `value` (as JSON holds it) is of the type `hint` of a TrainSettings field."""
    if hint is bool:
        return _flag(value)
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _INT64 \
            else "expected a whole number"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "expected a finite number"
    if hint is str:
        return _text(value)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        ok = isinstance(value, list) and len(value) == len(args) and all(
            _setting_type_problem(a, v) is None for a, v in zip(args, value, strict=True))
        return None if ok else f"expected a list of {len(args)} numbers"
    return None


def _train_problem(train: dict) -> str | None:
    """What is wrong with a run's recorded training settings: each of its type as JSON holds it,
    then the settings' own check (`TrainSettings.checked`: finite and in range, as for the command
    line and datasets.toml), then a device torch can parse."""
    hints = typing.get_type_hints(TrainSettings)
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    for key, value in train.items():
        if key not in known:
            return f"spec.train.{key}: not a training setting (valid: {', '.join(sorted(known))})"
        problem = _setting_type_problem(hints[key], value)
        if problem:
            return f"spec.train.{key}{_shown(value)}: {problem}"
    try:
        TrainSettings(**train).checked("spec.train")
    except SettingError as e:
        if e.key in train:
            return f"spec.train.{e.key}{_shown(train[e.key])}: {e.problem}"
        return str(e)
    if "device" in train:
        try:
            torch.device(train["device"])
        except (RuntimeError, ValueError):
            return f"spec.train.device{_shown(train['device'])}: is not a device (cpu, cuda, cuda:N)"
    return None


def config_problem(raw: Any) -> str | None:
    """What makes a run's config.json (as read) one that a run cannot use: the first field missing,
    of the wrong type or out of range, as `FIELD: VALUE: what is wrong`, or None. Settings added
    since a run was written may be missing (they take the earlier behaviour's defaults)."""
    if not isinstance(raw, dict):
        return "expected a JSON object"
    problem = _fields_problem(raw, _CONFIG_FIELDS, "")
    if problem is None:
        problem = _fields_problem(raw["spec"], _SPEC_FIELDS, "spec.")
    return problem or _train_problem(raw["spec"]["train"])
