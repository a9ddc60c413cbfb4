"""The zarr (v3) feature store shared by every subcommand.

Layout (one group per dataset)::

    <store>/<dataset>/                 attrs: classes, prompt_names, class_splits, dims, provenance, complete
        videos/ids          (N,)  str
        videos/labels       (N,)  int32   class id (rank in the dataset's class order)
        videos/partition    (N,)  int8    index into api.PARTITIONS, -1 when unassigned
        features/<name>     (N, dim) float32   attrs: modality, dim, provenance
        label_embeddings/<text encoder>  (C, dim) float32
        splits/<split>/<partition>       int32 video indices; attrs: classes per stage, how drawn

Writes are atomic per group: a dataset or a split is built in a staging folder beside the store
and renamed into place only once everything (including the `complete` attribute) is written,
so a write killed half-way never leaves a group that reads as complete, and a failed write leaves
the store as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .api import PARTITIONS, FeatureBundle
from .errors import SplitError, StoreError

SCHEMA_VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _zarr():
    import zarr  # local import: keeps `clipclap --help` light

    return zarr


@contextlib.contextmanager
def _staged_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh folder beside `final`; on success it replaces `final` atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
        trash = None
        if final.exists():
            trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
        os.replace(staging, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class SplitData:
    """A protocol split as stored: video indices per partition and class ids per stage."""

    name: str
    indices: dict[str, np.ndarray]
    classes: dict[str, list[int]]
    attrs: dict[str, Any]

    def videos(self, *partitions: str) -> np.ndarray:
        return np.concatenate([self.indices[p] for p in partitions])


#: A URL scheme (`s3://`, `gs://`, `file://`), also as `Path` leaves it (`s3:/bucket`); two letters at
#: least, so that a Windows drive (`C:/`) is not one.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")


class FeatureStore:
    """A zarr directory holding datasets, their features, label embeddings and splits.

    The store is a folder on a local or shared (POSIX) file system: its atomic writes rename
    staged folders and extraction's writer lock creates a file exclusively, neither of which
    object stores offer. A URL is refused rather than taken for a local folder named `s3:`.
    """

    def __init__(self, path: Path | str):
        url = _URL.match(str(path))
        if url:
            raise StoreError(f"{url.group(1)}:// stores are not supported yet: the store must be a folder on a local "
                             "or shared file system (a bucket mounted with s3fs or gcsfuse is one)")
        self.path = Path(path).expanduser()

    # ---------------------------------------------------------------- reading
    def datasets(self) -> list[str]:
        """Names of the complete datasets in the store."""
        if not (self.path / "zarr.json").exists():
            return []
        root = _zarr().open_group(self.path, mode="r")
        return sorted(n for n, g in root.groups() if g.attrs.get("complete"))

    def _group(self, dataset: str):
        try:
            group = _zarr().open_group(self.path / dataset, mode="r")
        except Exception:
            group = None
        if group is None or not group.attrs.get("complete"):
            raise StoreError(
                f"dataset {dataset!r} is not in the store {self.path} "
                f"(run `clipclap import {dataset} ROOT` or `clipclap demo` first)"
            )
        return group

    def has_dataset(self, dataset: str) -> bool:
        return dataset in self.datasets()

    def info(self, dataset: str) -> dict[str, Any]:
        """The dataset group's attributes (classes, prompt names, provenance, ...)."""
        return dict(self._group(dataset).attrs)

    def read_videos(self, dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, labels, partition) of every video."""
        g = self._group(dataset)
        return (
            np.array(g["videos/ids"][:].tolist(), dtype=str),
            np.asarray(g["videos/labels"][:], dtype=np.int64),
            np.asarray(g["videos/partition"][:], dtype=np.int8),
        )

    def feature_names(self, dataset: str) -> dict[str, dict[str, Any]]:
        g = self._group(dataset)
        if "features" not in g:
            return {}
        return {name: dict(arr.attrs) | {"shape": list(arr.shape)} for name, arr in g["features"].arrays()}

    def read_features(self, dataset: str, name: str) -> np.ndarray:
        g = self._group(dataset)
        if "features" not in g or name not in g["features"]:
            raise StoreError(
                f"dataset {dataset!r} has no {name!r} features in {self.path}; "
                f"it has: {', '.join(self.feature_names(dataset)) or '(none)'}"
            )
        return np.asarray(g["features"][name][:], dtype=np.float32)

    def label_embedding_names(self, dataset: str) -> dict[str, list[int]]:
        g = self._group(dataset)
        if "label_embeddings" not in g:
            return {}
        return {name: list(arr.shape) for name, arr in g["label_embeddings"].arrays()}

    def read_label_embeddings(self, dataset: str, name: str) -> np.ndarray:
        g = self._group(dataset)
        if "label_embeddings" not in g or name not in g["label_embeddings"]:
            raise StoreError(f"dataset {dataset!r} has no {name!r} label embeddings in {self.path}")
        return np.asarray(g["label_embeddings"][name][:], dtype=np.float32)

    def split_names(self, dataset: str) -> list[str]:
        g = self._group(dataset)
        if "splits" not in g:
            return []
        return sorted(n for n, s in g["splits"].groups() if s.attrs.get("complete"))

    def read_split(self, dataset: str, split: str) -> SplitData:
        names = self.split_names(dataset)
        if split not in names:
            raise SplitError(
                f"dataset {dataset!r} has no split {split!r} in {self.path}"
                + (f"; it has: {', '.join(names)}" if names else "")
                + f" (run `clipclap split {dataset} --split {split}`)"
            )
        g = self._group(dataset)["splits"][split]
        attrs = dict(g.attrs)
        indices = {p: np.asarray(g[p][:], dtype=np.int64) for p in PARTITIONS}
        return SplitData(split, indices, {k: list(v) for k, v in attrs["classes"].items()}, attrs)

    # ---------------------------------------------------------------- writing
    def _ensure_root(self) -> None:
        if not (self.path / "zarr.json").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            _zarr().open_group(self.path, mode="a").attrs.update(
                {"clipclap_store": SCHEMA_VERSION}
            )

    def write_dataset(self, dataset: str, bundle: FeatureBundle, attrs: dict[str, Any]) -> None:
        """Write (or replace) a whole dataset group atomically."""
        zarr = _zarr()
        self._ensure_root()
        n = len(bundle.ids)
        with _staged_dir(self.path / dataset) as staging:
            g = zarr.open_group(staging, mode="w")
            v = g.require_group("videos")
            ids = v.create_array("ids", shape=(n,), dtype=str)
            if n:
                ids[:] = np.asarray(bundle.ids, dtype=str)
            v.create_array("labels", data=np.asarray(bundle.labels, dtype=np.int32))
            v.create_array("partition", data=np.asarray(bundle.partition, dtype=np.int8))
            f = g.require_group("features")
            for name, arr in bundle.features.items():
                chunk_rows = max(1, min(n, 4096))
                a = f.create_array(name, data=np.ascontiguousarray(arr, dtype=np.float32),
                                   chunks=(chunk_rows, arr.shape[1]), compressors=None)
                a.attrs.update({"modality": name, "dim": int(arr.shape[1]), "source": attrs.get("source", "")})
            e = g.require_group("label_embeddings")
            for name, arr in bundle.label_embeddings.items():
                e.create_array(name, data=np.ascontiguousarray(arr, dtype=np.float32), compressors=None)
            g.require_group("splits")
            g.attrs.update(
                {
                    "classes": list(bundle.classes),
                    "prompt_names": list(bundle.prompt_names),
                    "class_splits": bundle.class_splits,
                    "provenance": bundle.provenance,
                    **attrs,
                    "created": now_iso(),
                    "complete": True,
                }
            )

    def write_label_embeddings(self, dataset: str, name: str, matrix: np.ndarray, attrs: dict[str, Any]) -> None:
        """Write (or replace) one text encoder's label embeddings (C, dim) atomically."""
        zarr = _zarr()
        info = self.info(dataset)
        if matrix.shape[0] != len(info["classes"]):
            raise StoreError(f"{name} label embeddings have {matrix.shape[0]} rows, dataset {dataset!r} has "
                             f"{len(info['classes'])} classes")
        folder = self.path / dataset / "label_embeddings"
        if not (folder / "zarr.json").exists():
            zarr.open_group(self.path / dataset, mode="a").require_group("label_embeddings")
        with _staged_dir(folder / name) as staging:
            arr = zarr.create_array(staging, data=np.ascontiguousarray(matrix, dtype=np.float32), compressors=None)
            arr.attrs.update({**attrs, "created": now_iso()})

    def write_split(
        self,
        dataset: str,
        split: str,
        indices: dict[str, np.ndarray],
        classes: dict[str, list[int]],
        attrs: dict[str, Any],
    ) -> None:
        """Write (or replace) one protocol split atomically."""
        zarr = _zarr()
        self._group(dataset)
        splits_dir = self.path / dataset / "splits"
        if not (splits_dir / "zarr.json").exists():
            zarr.open_group(self.path / dataset, mode="a").require_group("splits")
        with _staged_dir(splits_dir / split) as staging:
            g = zarr.open_group(staging, mode="w")
            for p in PARTITIONS:
                g.create_array(p, data=np.asarray(indices[p], dtype=np.int32))
            g.attrs.update(
                {
                    "classes": {k: [int(c) for c in v] for k, v in classes.items()},
                    **attrs,
                    "created": now_iso(),
                    "complete": True,
                }
            )

    def describe(self, dataset: str) -> dict[str, Any]:
        """What the store holds for a dataset (for `clipclap datasets show`)."""
        info = self.info(dataset)
        ids, labels, _ = self.read_videos(dataset)
        splits = {}
        for name in self.split_names(dataset):
            s = self.read_split(dataset, name)
            splits[name] = {
                p: {"videos": int(len(idx)), "classes": int(len(np.unique(labels[idx])))}
                for p, idx in s.indices.items()
            } | {"how": s.attrs.get("how", {})}
        return {
            "dataset": dataset,
            "store": str(self.path),
            "videos": int(len(ids)),
            "classes": len(info["classes"]),
            "features": {k: v["shape"][1] for k, v in self.feature_names(dataset).items()},
            "label_embeddings": {k: v[1] for k, v in self.label_embedding_names(dataset).items()},
            "splits": splits,
            "source": info.get("source", ""),
            "created": info.get("created", ""),
            "clipclap_version": info.get("clipclap_version", ""),
        }
