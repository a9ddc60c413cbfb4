"""A run folder: its name, its files (written atomically), the CPU threads and data it was started with."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from clipclap_cli.data.protocol_data import ProtocolData
from clipclap_cli.errors import RunError
from clipclap_cli.files import write_json
from clipclap_cli.protocol import SCHEDULE_SETTINGS, TrainSettings, run_name_parts
from clipclap_cli.store.feature_store import FeatureStore, now_iso
from clipclap_cli.train.run_format import RUN_FORMAT, numbered_from_one
from clipclap_cli.train.runs.spec import RunSpec


def read_json(path: Path) -> Any:
    """A run's JSON file; a damaged one is a RunError naming it, not a traceback."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is damaged (not valid JSON: {e})") from None


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
        return run_threads(path, raw, threads)
    from clipclap_cli import __version__

    threads = run_threads(path, None, threads)
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
    config = path / "config.json"
    if not config.exists():
        raise RunError(f"{path}: not a clipclap run (no config.json)")
    raw = read_json(config)
    try:
        s = raw["spec"]
        spec = RunSpec(s["dataset"], s["split"], s["head"], s["params"], s["dims"], TrainSettings(**s["train"]),
                       s.get("variant", {}), s.get("legacy_label_order", False), s.get("protocol_defaults", {}),
                       raw.get("settings_sources", {}))
    except (KeyError, TypeError) as e:
        made_by = raw.get("clipclap_version", "?") if isinstance(raw, dict) else "?"
        raise RunError(f"{path}: config.json is not one this clipclap can read ({e}); "
                       f"it was written by clipclap {made_by}") from None
    return spec, raw
