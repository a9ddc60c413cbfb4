"""A run folder: its name, creating or reopening it, its CPU threads and its stages' results.

Runs write only into runs: a run folder is one clipclap made (its marker file `RUN_MARKER`,
written before anything else; a run of an earlier clipclap is recognised by its config.json),
or a new or empty folder, never a folder inside a clipclap store (`check_run_folder`). Its
config.json is checked whole when it is read (runs/config.py `load_spec`); the files' names are
runs/files.py's, finding runs is runs/finding.py's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipclap_cli.data.protocol_data import Expected, ProtocolData, check_same_data
from clipclap_cli.errors import RunError
from clipclap_cli.files import write_json
from clipclap_cli.protocol import SCHEDULE_SETTINGS, run_name_parts
from clipclap_cli.runs.config import config_problem, load_spec, read_json
from clipclap_cli.runs.files import CONFIG, RUN_MARKER, STAGE_RESULT, stage_file
from clipclap_cli.runs.finding import is_run_folder, run_around, store_around
from clipclap_cli.runs.run_format import RUN_FORMAT, numbered_from_one
from clipclap_cli.runs.spec import RunSpec
from clipclap_cli.store.feature_store import now_iso
from clipclap_cli.store.locations import StoreLocation

#: names other modules import from here (their homes are runs/config, runs/files, runs/finding)
__all__ = ["RUN_MARKER", "check_run", "check_run_folder", "check_runs_dir", "config_problem", "cpu_threads",
           "default_run_dir", "is_run_folder", "load_spec", "mark_run", "open_run", "read_json", "recorded_data",
           "run_around", "run_threads", "stage_result", "start_run", "store_around", "write_json"]


def check_runs_dir(runs_dir: Path, store_at: Path | None = None) -> None:
    """Refuse a folder of runs inside a clipclap store (links resolved; `store_at`: the folder of
    the command's store, which may not exist yet) or one that is a file, before anything is written."""
    inside = store_around(runs_dir, store_at)
    if inside is not None:
        raise RunError(f"{runs_dir} is inside the clipclap store {inside}: runs are never written into a store; "
                       "give --runs-dir a folder outside it")
    if runs_dir.exists() and not runs_dir.is_dir():
        raise RunError(f"{runs_dir} is a file, not a folder of runs; give --runs-dir a folder")


def check_run_folder(path: Path, store_at: Path | None = None) -> None:
    """Refuse, before anything is written, a run folder clipclap may not write: one inside a
    clipclap store (links resolved), a file, or a folder that holds files and is no run of
    clipclap's (`is_run_folder`). A new or empty folder, or a run clipclap made, passes."""
    inside = store_around(path, store_at)
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


@dataclass(frozen=True)
class RunOpening:
    """A run folder checked before its data is read (`check_run`): what `start_run` then writes or keeps."""

    path: Path
    spec: RunSpec
    store: str
    "The store as config.json records it"
    raw: dict | None
    "The run's config.json as recorded; None for a new run"
    threads: int
    "The CPU threads to train with (`run_threads`)"

    def expected(self, trainable: bool = False) -> Expected:
        """What the run's data must be (the digest it recorded), for the read (`load_protocol_data`)."""
        return recorded_data(self.path, self.raw or {}, trainable)


def check_run(path: Path, spec: RunSpec, store: StoreLocation, threads: int | None,
              digest: str | None = None) -> RunOpening:
    """Check, before anything is written, that the run folder may be written (`check_run_folder`)
    and, for an existing run, that it was started with the same spec, data (`digest`: the data's,
    when read already; else the read checks it, `RunOpening.expected`) and threads."""
    check_run_folder(path, store.path)
    config = path / CONFIG
    if not config.exists():
        return RunOpening(path, spec, store.recorded(), None, run_threads(path, None, threads))
    # read back through RunSpec: settings added since the run was written take their
    # defaults, which keep the earlier behaviour, so such runs resume instead of failing
    recorded, raw = load_spec(path)
    old, new = _settings(recorded), _settings(spec)
    if old != new:
        diff = [f"{k}.{sub}" if sub else k for k in _differing(old, new)
                for sub in _differing(old.get(k), new.get(k)) or [""]]
        raise RunError(f"run {path} exists with different settings ({', '.join(diff)}); "
                       "choose another --run folder or remove it")
    if digest is not None:
        check_same_data(recorded_data(path, raw), digest, spec.dataset, spec.split)
    return RunOpening(path, spec, store.recorded(), raw, run_threads(path, raw, threads))


def start_run(opening: RunOpening, digest: str) -> int:
    """Write a new run's marker and config.json (`digest`: of the data it trains on), or mark an
    existing one; returns the CPU threads to train with."""
    path, raw = opening.path, opening.raw
    if raw is not None:
        mark_run(path, raw.get("run_format", 1))
        return opening.threads
    from clipclap_cli import __version__

    mark_run(path, RUN_FORMAT)  # first: a folder holding only the marker is a run not yet started
    write_json(path / CONFIG, {"spec": opening.spec.as_dict(), "store": opening.store, "data_digest": digest,
                               "threads": opening.threads, "created": now_iso(), "clipclap_version": __version__,
                               "torch_version": torch.__version__, "run_format": RUN_FORMAT,
                               "settings_sources": opening.spec.sources})
    return opening.threads


def open_run(path: Path, spec: RunSpec, store: StoreLocation, data: ProtocolData, threads: int | None) -> int:
    """`check_run` then `start_run` for data read already (a stack's runs share one read);
    returns the CPU threads to train with (see `run_threads`)."""
    return start_run(check_run(path, spec, store, threads, data.digest), data.digest)


def recorded_data(path: Path, raw: dict | None = None, trainable: bool = False) -> Expected:
    """What the data of the run at `path` must be, for the read (`load_protocol_data`): the digest
    its config.json (`raw`, read here when not given) recorded; none for a new run, or a run of a
    clipclap before the digest. A config.json that cannot be read gives none here: `load_spec`
    names what is wrong with it. `trainable`: the data is read to train on."""
    if raw is None:
        try:
            raw = json.loads((path / CONFIG).read_text())
        except (OSError, ValueError):
            raw = None
    digest = raw.get("data_digest") if isinstance(raw, dict) else None
    return Expected(path, digest if isinstance(digest, str) else None, trainable)


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


def stage_result(path: Path, stage: int) -> dict | None:
    """A finished stage's result.json (epochs counted from 1, whichever run format wrote it)."""
    f = stage_file(path, stage, STAGE_RESULT)
    if not f.exists():
        return None
    result = read_json(f)
    return result if result.get("run_format", 1) >= 2 else numbered_from_one(result) | {"run_format": RUN_FORMAT}
