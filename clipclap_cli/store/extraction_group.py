"""An extraction's working group: a dataset half extracted, in the store, resumable and shardable.

The store owns this layout as it owns the datasets' (`feature_store.py`); `extract/extraction.py`
decides which rows to do and what the settings mean, and reads and writes only through here::

    <store>/.extract-<dataset>/          attrs: settings (written last: from then on it counts), classes
        videos/ids, videos/labels          the adapter's videos, in its order
        features/<modality>   (N, dim)     pre-allocated float32, chunks of `chunk` rows, no compression
        status/<modality>     (N,) int8    PENDING, DONE or FAILED (same chunking)
        reasons               (N,) str     why a video failed
        write.lock                         (folders) held by the one process that commits the dataset

Chunks of `chunk` rows are the unit of work: each belongs to one process, so no two write one
chunk file. A block's features and reasons are written before its statuses (`write`), so a
process killed at any moment leaves at worst rows still pending. The finished dataset goes
into the store like any other, through `FeatureStore.write_dataset`'s versioned commit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipclap_cli.names import check_name
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.store.locations import staging_name
from clipclap_cli.store.locks import exclusive

#: A row's status in `status/<modality>`: to do, done, or failed (its reason in `reasons`).
PENDING, DONE, FAILED = 0, 1, 2

#: The lock file in a folder store's working group, held while the finished dataset is committed.
COMMIT_LOCK = "write.lock"


@dataclass
class Rows:
    """A block of rows of the working group: features and status by modality, and the reasons
    (an object array of str, so that a reason of any length fits)."""

    features: dict[str, np.ndarray]
    status: dict[str, np.ndarray]
    reasons: np.ndarray


@dataclass
class Blueprint:
    """What a new working group holds: its videos' ids and labels, the dimension of each
    modality's features, the rows per chunk, its attributes (`settings` among them) and, where
    the store's dataset already holds some rows (`prefill`), every row's starting values."""

    ids: list[str]
    labels: np.ndarray
    dims: dict[str, int]
    chunk: int
    attrs: dict[str, Any]
    prefill: Rows | None = None


def _zarr():
    import zarr  # local import: keeps `clipclap --help` light

    return zarr


class ExtractionGroup:
    """The working group of `dataset`'s extraction into `store` (see the module's doc)."""

    def __init__(self, store: FeatureStore, dataset: str):
        self.store = store
        self.key = f".extract-{check_name('dataset', dataset)}"
        self.path: Path | None = None if store.path is None else store.path / self.key
        "A folder store's working folder; None behind a URL"
        self._group = None

    def __str__(self) -> str:
        return f"{self.store.location}/{self.key}"

    @property
    def renamed_into_place(self) -> bool:
        """Whether `create` builds the group apart and renames it into place (in a folder), so
        that any process may create it; behind a URL, which cannot rename, one process must."""
        return self.path is not None

    def ready(self) -> bool:
        """Whether the group is there to use: in a folder, whether it exists (it appears whole);
        behind a URL, whether its settings are written (they are written last)."""
        if self.path is not None:
            return self.path.exists()
        location = self.store.location
        if not location.exists(self.key):
            return False
        return "settings" in _zarr().open_group(location.zarr(self.key), mode="r").attrs

    def create(self, blueprint: Callable[[], Blueprint]) -> None:
        """Create the group from `blueprint()` (called only when it is created). In a folder it
        is built in a staging folder, under the store's writer lock (`strays` counts on that),
        and renamed into place; a process that loses the race drops its copy. Behind a URL it
        is written in place, its settings last."""
        if self.path is None:
            self._build(self.store.location.zarr(self.key), blueprint())
            return
        if self.path.exists():
            return
        with self.store.writer():
            staging = self.path.parent / staging_name(self.path.name)
            self._build(staging, blueprint())
            try:
                os.rename(staging, self.path)
            except OSError:  # another process created it first
                shutil.rmtree(staging, ignore_errors=True)

    def _build(self, where, plan: Blueprint) -> None:
        """Write the group's arrays at `where` (a folder or a zarr store), then its attributes."""
        n, chunk = len(plan.ids), plan.chunk
        g = _zarr().open_group(where, mode="w")
        ids = g.create_array("videos/ids", shape=(n,), dtype=str, chunks=(chunk,))
        ids[:] = np.asarray(plan.ids, dtype=str)
        g.create_array("videos/labels", data=np.asarray(plan.labels, dtype=np.int32))
        for modality, dim in plan.dims.items():
            g.create_array(f"features/{modality}", shape=(n, dim), dtype=np.float32,
                           chunks=(chunk, dim), compressors=None, fill_value=0.0)
            g.create_array(f"status/{modality}", shape=(n,), dtype=np.int8, chunks=(chunk,), fill_value=PENDING)
        reasons = g.create_array("reasons", shape=(n,), dtype=str, chunks=(chunk,))
        reasons[:] = np.asarray([""] * n, dtype=str)
        if plan.prefill is not None:
            _write(g, 0, n, plan.prefill)
        g.attrs.update(plan.attrs)

    def open(self) -> None:
        """Open the (ready) group for reading and writing."""
        self._group = _zarr().open_group(self.store.location.zarr(self.key), mode="r+")

    def remove(self) -> None:
        """Remove the group (its dataset is written, or it is a finished run's leftovers)."""
        self._group = None
        self.store.location.remove(self.key)

    @property
    def settings(self) -> dict | None:
        """The settings the group was created with (None where they are missing)."""
        return self._opened().attrs.get("settings")

    def _opened(self):
        if self._group is None:
            self.open()
        return self._group

    # ------------------------------------------------------------ rows
    def status(self, modalities, lo: int = 0, hi: int | None = None) -> dict[str, np.ndarray]:
        """Each modality's status of rows lo:hi."""
        g = self._opened()
        return {m: np.asarray(g[f"status/{m}"][lo:hi]) for m in modalities}

    def read(self, modalities, lo: int = 0, hi: int | None = None) -> Rows:
        """Rows lo:hi of the features, statuses and reasons."""
        g = self._opened()
        return Rows(features={m: np.asarray(g[f"features/{m}"][lo:hi]) for m in modalities},
                    status=self.status(modalities, lo, hi),
                    reasons=np.asarray(g["reasons"][lo:hi]).astype(object))

    def write(self, lo: int, rows: Rows) -> None:
        """Write `rows` from row `lo` on: features and reasons, then the statuses last, so that a
        row counts as done only once what it holds is in."""
        hi = lo + len(rows.reasons)
        _write(self._opened(), lo, hi, rows)

    def write_status(self, status: dict[str, np.ndarray]) -> None:
        """Replace whole status arrays (`--retry-failed` puts failed rows back to pending)."""
        g = self._opened()
        for modality, values in status.items():
            g[f"status/{modality}"][:] = np.asarray(values, dtype=np.int8)

    def videos(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, labels) of every row."""
        g = self._opened()
        return (np.array(g["videos/ids"][:].tolist(), dtype=str),
                np.asarray(g["videos/labels"][:], dtype=np.int64))

    # ------------------------------------------------------------ the commit
    @contextlib.contextmanager
    def committer(self) -> Iterator[bool]:
        """True for the one process that commits the finished dataset (`locks.exclusive` on the
        working folder's lock file). Behind a URL, which has no exclusive create, always True:
        each such process commits its own (identical) version, the newest one counting."""
        if self.path is None:
            yield True
            return
        with exclusive(self.path / COMMIT_LOCK) as holder:
            yield holder is None


def _write(g, lo: int, hi: int, rows: Rows) -> None:
    """Write `rows` into rows lo:hi of the zarr group `g`, the statuses last."""
    for modality, values in rows.features.items():
        g[f"features/{modality}"][lo:hi] = values
    g["reasons"][lo:hi] = np.asarray(rows.reasons).astype(str)
    for modality, values in rows.status.items():
        g[f"status/{modality}"][lo:hi] = np.asarray(values, dtype=np.int8)
