"""A run folder: its name, its files (written atomically), the CPU threads and data it was started with.

Runs write only into runs: a run folder is one clipclap made (its marker file `RUN_MARKER`,
written before anything else; a run of an earlier clipclap is recognised by its config.json),
or a new or empty folder, never a folder inside a clipclap store (`check_run_folder`). Its
config.json is checked whole when it is read (`load_spec`): a hand-edited field of the wrong
type or out of range is one line naming the file and the field, before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from clipclap_cli.data.protocol_data import ProtocolData
from clipclap_cli.errors import RunError
from clipclap_cli.files import write_json
from clipclap_cli.protocol import SCHEDULE_SETTINGS, SettingError, TrainSettings, run_name_parts, setting_problem
from clipclap_cli.runs.run_format import RUN_FORMAT, numbered_from_one
from clipclap_cli.runs.spec import RunSpec
from clipclap_cli.store.feature_store import FeatureStore, now_iso
from clipclap_cli.store.locations import is_store_root


def read_json(path: Path) -> Any:
    """A run's JSON file; a damaged one is a RunError naming it, not a traceback."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is damaged (not valid JSON: {e})") from None


RUN_MARKER = ".clipclap-run"
"""The file clipclap writes first into every run folder it makes (JSON: the run's format)."""


def store_around(path: Path, store: FeatureStore | None = None) -> Path | None:
    """The clipclap store that `path` is, or is inside, with links resolved (a folder whose
    zarr.json carries the store marker, or `store`'s folder, which may not exist yet), or None."""
    resolved = Path(path).expanduser().resolve()
    own = store.path.expanduser().resolve() if store is not None and store.path is not None else None
    for folder in (resolved, *resolved.parents):
        if folder == own or is_store_root(folder):
            return folder
    return None


def is_run_folder(path: Path) -> bool:
    """Whether clipclap made `path` as a run folder: it holds the marker, or (a run of a clipclap
    from before the marker) a config.json that holds a run's spec."""
    if (path / RUN_MARKER).is_file():
        return True
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    spec = raw.get("spec") if isinstance(raw, dict) else None
    return isinstance(spec, dict) and {"dataset", "head", "train"} <= set(spec)


def run_around(path: Path) -> Path | None:
    """The run folder that `path` is, or is inside (as written and with links resolved), or None."""
    path = Path(path).expanduser()
    for folder in dict.fromkeys([path, *path.absolute().parents, *path.resolve().parents]):
        if is_run_folder(folder):
            return folder
    return None


def check_runs_dir(runs_dir: Path, store: FeatureStore | None = None) -> None:
    """Refuse a folder of runs inside a clipclap store (links resolved) or one that is a file,
    before anything is written."""
    inside = store_around(runs_dir, store)
    if inside is not None:
        raise RunError(f"{runs_dir} is inside the clipclap store {inside}: runs are never written into a store; "
                       "give --runs-dir a folder outside it")
    if runs_dir.exists() and not runs_dir.is_dir():
        raise RunError(f"{runs_dir} is a file, not a folder of runs; give --runs-dir a folder")


def check_run_folder(path: Path, store: FeatureStore | None = None) -> None:
    """Refuse, before anything is written, a run folder clipclap may not write: one inside a
    clipclap store (links resolved), a file, or a folder that holds files and is no run of
    clipclap's (`is_run_folder`). A new or empty folder, or a run clipclap made, passes."""
    inside = store_around(path, store)
    if inside is not None:
        raise RunError(f"{path} is inside the clipclap store {inside}: a run is never written into a store; "
                       "choose a run folder outside it (--run or --runs-dir)")
    if path.is_symlink() and not path.exists():
        raise RunError(f"{path} is a link to nothing; choose another run folder (--run or --runs-dir)")
    if not path.exists():
        return
    if not path.is_dir():
        raise RunError(f"{path} is a file, not a run folder; choose another run folder (--run or --runs-dir)")
    if is_run_folder(path):
        return
    try:
        held = sorted(p.name for p in path.iterdir())
    except OSError as e:
        raise RunError(f"{path} cannot be read ({e.strerror or e}); choose another run folder") from None
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise RunError(f"{path} is not a run folder clipclap made (it holds {shown}); runs are written only into "
                       "such a folder or a new or empty one: choose another (--run or --runs-dir)")


def mark_run(path: Path, run_format: int) -> None:
    """Write the marker into a run folder (the first file of a new run; added to a run of a
    clipclap from before the marker when it resumes)."""
    if not (path / RUN_MARKER).is_file():
        write_json(path / RUN_MARKER, {"run_format": run_format})


def default_run_dir(runs_dir: Path, spec: RunSpec) -> Path:
    """runs/<dataset>[-<split>]/<head>[,k=v...]/seed<seed>: runs differing only in seed are
    siblings; a split other than `cls_split` adds `-<split>`, a head picked
    from several plugins' by `SOURCE:NAME` is `SOURCE.NAME`.
    Every part of the path is checked (`names.py`): no name or value can lead it elsewhere."""
    from clipclap_cli.names import check_folder_value, check_name, folder_of

    for key, value in spec.variant.items():  # the parts that come from the command line
        check_name("parameter", key)
        check_folder_value(key, value)
    method = ",".join([folder_of("fusion head", spec.head), *run_name_parts(spec.as_dict())])
    name = check_name("dataset", spec.dataset)
    if spec.split != "cls_split":
        name += f"-{check_name('split', spec.split)}"
    return runs_dir / name / method / f"seed{spec.train.seed}"


def _settings(spec: RunSpec) -> dict[str, Any]:
    """A spec as its config.json holds it (tuples as lists), less the schedule defaults it records
    only to name its folder: they do not change its numbers, so a run started before they were
    recorded, or before datasets.toml's defaults changed, is still the same run."""
    out = json.loads(json.dumps(spec.as_dict()))
    named = {k: v for k, v in out.pop("protocol_defaults", {}).items() if k not in SCHEDULE_SETTINGS}
    return out | ({"protocol_defaults": named} if named else {})


def _differing(a: Any, b: Any) -> list[str]:
    """The keys on which two dicts differ (none when either is not a dict)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return []
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def open_run(path: Path, spec: RunSpec, store: FeatureStore, data: ProtocolData, threads: int | None) -> int:
    """Create the run folder, or check that an existing one was started with the same spec, data
    and threads; returns the CPU threads to train with (see `run_threads`)."""
    check_run_folder(path, store)
    config = path / "config.json"
    if config.exists():
        # read back through RunSpec: settings added since the run was written take their
        # defaults, which keep the earlier behaviour, so such runs resume instead of failing
        recorded, raw = load_spec(path)
        old, new = _settings(recorded), _settings(spec)
        if old != new:
            diff = [f"{k}.{sub}" if sub else k for k in _differing(old, new)
                    for sub in _differing(old.get(k), new.get(k)) or [""]]
            raise RunError(f"run {path} exists with different settings ({', '.join(diff)}); "
                           "choose another --run folder or remove it")
        check_same_data(path, raw, data)
        threads = run_threads(path, raw, threads)
        mark_run(path, raw.get("run_format", 1))
        return threads
    from clipclap_cli import __version__

    threads = run_threads(path, None, threads)
    mark_run(path, RUN_FORMAT)  # first: a folder holding only the marker is a run not yet started
    write_json(config, {"spec": spec.as_dict(), "store": store.location.recorded(), "data_digest": data.digest,
                        "threads": threads, "created": now_iso(), "clipclap_version": __version__,
                        "torch_version": torch.__version__, "run_format": RUN_FORMAT,
                        "settings_sources": spec.sources})
    return threads


def run_threads(path: Path, raw: dict | None, threads: int | None) -> int:
    """The CPU threads a run trains with: those its config (`raw`, None for a new run) recorded
    when it started (its numbers depend on them at the last bit: a matrix multiply splits its
    work by thread), else `threads`, else torch's default. Another count for a started run is refused."""
    recorded = raw.get("threads") if raw is not None else None
    if threads is not None and recorded is not None and threads != recorded:
        raise RunError(f"run {path} trains with {recorded} CPU thread(s); another count would change its numbers "
                       f"(leave out --threads, or pass --threads {recorded})")
    return recorded or threads or torch.get_num_threads()


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to `n` for the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_same_data(path: Path, raw: dict, data: ProtocolData) -> None:
    """Refuse a run whose features, label embeddings or split changed since it was started (runs
    written before clipclap recorded the digest are taken as they are)."""
    recorded = raw.get("data_digest")
    if recorded and recorded != data.digest:
        raise RunError(f"run {path} was trained on other {data.dataset!r} data (split {data.split!r}) than the store "
                       "now holds: its features, label embeddings or split changed since; train a new run on this "
                       "data (another --run folder), or point --store at the data the run was trained on")


def stage_result(path: Path, stage: int) -> dict | None:
    """A finished stage's result.json (epochs counted from 1, whichever run format wrote it)."""
    f = path / f"stage{stage}" / "result.json"
    if not f.exists():
        return None
    result = read_json(f)
    return result if result.get("run_format", 1) >= 2 else numbered_from_one(result) | {"run_format": RUN_FORMAT}


def load_spec(path: Path) -> tuple[RunSpec, dict]:
    """A run's spec and its config.json as recorded, the whole file checked (`config_problem`):
    a field a run cannot use is one RunError naming the file and the field, before any write."""
    config = path / "config.json"
    if not config.exists():
        raise RunError(f"{path}: not a clipclap run (no config.json)")
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
