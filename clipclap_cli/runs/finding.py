"""Finding runs: whether a folder is a run clipclap made, the runs under a folder (`find_runs`),
the run or store a path lies in, and why a path given as a run is none (pointing at the run the
user most likely meant).

What `evaluate RUN` and `report` do to find run folders, and what refuses an output written
into a run or a store; the commands only print what these return or raise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from clipclap_cli.errors import RunError
from clipclap_cli.runs.files import CONFIG, RESULTS, RUN_MARKER
from clipclap_cli.store.locations import is_store_root

if TYPE_CHECKING:  # pragma: no cover
    pass


def store_around(path: Path, store_at: Path | None = None) -> Path | None:
    """The clipclap store that `path` is, or is inside, with links resolved (a folder whose
    zarr.json carries the store marker, or `store_at`, a store's folder, which may not exist yet), or None."""
    resolved = Path(path).expanduser().resolve()
    own = store_at.expanduser().resolve() if store_at is not None else None
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
        raw = json.loads((path / CONFIG).read_text(encoding="utf-8"))
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


def check_output_place(path: Path) -> None:
    """Refuse an output (a table, figures, results) that would land inside a run folder or a
    feature store: a report written over a run's or a store's own file would destroy it."""
    store = store_around(path)
    if store is not None:
        raise RunError(f"{path} is inside the feature store {store}: write it elsewhere")
    run = run_around(path)
    if run is not None:
        raise RunError(f"{path} is inside the run {run}: write it elsewhere")


def has_config(path: Path) -> bool:
    """Whether `path` holds a run's config.json (what `evaluate RUN` takes as a run)."""
    return (Path(path) / CONFIG).exists()


def not_a_run(path: Path) -> str:
    """Why PATH is not a run folder, pointing at the run(s) the user most likely meant."""
    if path.is_dir():
        # runs sit up to three levels down (runs/DATASET/HEAD/seedN); a bounded search keeps a
        # mistyped large folder (a store, a home directory) from being walked whole
        runs = sorted(c.parent for depth in range(1, 4) for c in path.glob("*/" * depth + CONFIG))
        if runs:
            more = f" and {len(runs) - 1} more" if len(runs) > 1 else ""
            return (f"{path} is a folder of runs, not a run: evaluate one of them ({runs[0]}{more}), "
                    f"or tabulate them all with `clipclap report {path}`")
        parents = list(path.parents) + list(path.absolute().parents)
        inside = next((p for p in parents if has_config(p)), None)
        if inside is not None:
            return f"{path} is inside the run {inside}: evaluate that folder"
    return (f"{path}: no such run (a run folder holds {CONFIG}; "
            "for a dataset with checkpoints pass --stage1 and --stage2)")


def find_run(path: Path) -> Path:
    """The run folder `evaluate RUN` was given, or a RunError saying why PATH is none (`not_a_run`)."""
    path = Path(path)
    if not has_config(path):
        raise RunError(not_a_run(path))
    return path


def find_runs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Run folders with results, and those found without results yet (training, interrupted, or
    trained one stage at a time: a table without them says so). Each path is a run or a folder
    searched recursively; a named run must have results."""
    found: list[Path] = []
    pending: list[Path] = []
    for p in paths:
        if not p.exists():
            raise RunError(f"{p}: no such run or folder")
        if (p / RESULTS).exists():
            found.append(p)
            continue
        if has_config(p):
            raise RunError(f"{p}: the run has no results yet "
                           f"(finish it with `clipclap train`, then `clipclap evaluate {p}`)")
        for run in sorted(c.parent for c in p.rglob(CONFIG)):
            (found if (run / RESULTS).exists() else pending).append(run)
    if not found:
        hint = (f"{len(pending)} run(s) there have no results yet: finish them with `clipclap train`"
                if pending else "train with `clipclap train DATASET`")
        raise RunError(f"no evaluated runs under {', '.join(map(str, paths))} ({hint})")
    return list(dict.fromkeys(found)), list(dict.fromkeys(pending))
