"""The zarr (v3) feature store shared by every subcommand.

Layout (one group per dataset; every committed group under a versioned key `NAME~VERSION`,
see `locations.py` and docs/store.md)::

    <store>/                           attrs: clipclap_store (the marker: nothing else is written to)
    <store>/<dataset>~<version>/       attrs: classes, prompt_names, class_splits, dims, provenance, complete
        videos/ids          (N,)  str
        videos/labels       (N,)  int32   class id (rank in the dataset's class order)
        videos/partition    (N,)  int8    index into api.PARTITIONS, -1 when unassigned
        features/<name>     (N, dim) float32   attrs: modality, dim, provenance
        label_embeddings/<text encoder>[~<version>]  (C, dim) float32 (a version when written apart)
        splits/<split>[~<version>]/<partition>       int32 video indices; attrs: classes per stage, how drawn

Writes are atomic per group: a dataset, a split or a label-embedding matrix is written apart and
counts only once everything (its `complete` attribute last) is written, so a write killed at any
point leaves the old version or the new one, and a failed write leaves the store as it was. Every
name a key is built from is checked (`names.py`); a location is written only when it carries the
store's marker, or is new or empty (`open_for_writing`).
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from clipclap_cli.api import PARTITIONS, FeatureBundle
from clipclap_cli.errors import SplitError, StoreError
from clipclap_cli.names import check_name, is_valid_name
from clipclap_cli.store.integrity import array_options, content_digest, is_checksummed, missing_chunks, value_problem
from clipclap_cli.store.locations import (
    RECORD,
    STORE_MARKER,
    VERSION_SEP,
    committed,
    new_record,
    open_location,
    record_of,
)
from clipclap_cli.store.locks import LockWaitExpired, waiting

#: The store's writer lock, in its root (folders only): one command writes the store at a time.
WRITER_LOCK = ".clipclap-writer.lock"

#: The stores whose writer lock this process holds (by location): a second FeatureStore of the
#: same store in this process writes under it rather than waiting for itself.
_HELD: dict[str, int] = {}

#: How long a writer waits for another to finish by default (seconds; `--wait` sets it).
DEFAULT_WAIT_S = 600.0

SCHEMA_VERSION = 1


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def commit_stamp() -> dict[str, Any]:
    """The attributes written last on every group or array the store puts in place: when, a
    unique write id (what `FeatureStore.version` compares) and `complete`, which commits it."""
    return {"created": now_iso(), "write_id": uuid.uuid4().hex, "complete": True}


def _zarr():
    import zarr  # local import: keeps `clipclap --help` light

    return zarr


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Listing a store: a writer's staging folder, or a folder of the user's, is no zarr node,
    and zarr warns of each on stderr; they are not the store's data, so say nothing of them."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .* is not recognized as a component")
        yield


@dataclass(frozen=True)
class SplitData:
    """A protocol split as stored: video indices per partition and class ids per stage."""

    name: str
    indices: dict[str, np.ndarray]
    classes: dict[str, list[int]]
    attrs: dict[str, Any]

    def videos(self, *partitions: str) -> np.ndarray:
        return np.concatenate([self.indices[p] for p in partitions])


class FeatureStore:
    """A zarr hierarchy holding datasets, their features, label embeddings and splits.

    `where` is a folder (local or on a shared POSIX file system) or an fsspec URL (`s3://…`,
    `gs://…`; the scheme's fsspec package must be installed). `location` says how groups are
    put in place there; `path` is the folder, or None for a URL.
    """

    def __init__(self, where: Path | str, wait_s: float = DEFAULT_WAIT_S,
                 on_wait: Callable[[str], None] | None = None):
        self.location = open_location(where)
        self.path: Path | None = self.location.path
        self.wait_s, self.on_wait = wait_s, on_wait  # see `writer`
        self._pinned: dict[str, Any] = {}  # dataset -> its group, within `consistent_read`
        self._writable = False  # set by `open_for_writing`
        self._writer_depth = 0  # > 0 while this object holds the writer lock
        self._tidied = False

    def __str__(self) -> str:
        return str(self.location)

    # ---------------------------------------------------------------- reading
    def _committed_datasets(self) -> dict:
        """The complete dataset groups by name. Each group is opened by itself, so one whose
        metadata is damaged is left out (and named by `damaged_groups`) rather than failing all."""
        loc = self.location
        if not loc.exists():
            return {}
        if loc.attrs("") is None:
            raise StoreError(f"the store {loc} is damaged: its root metadata (zarr.json) cannot be read; write it "
                             "again as {\"zarr_format\": 3, \"node_type\": \"group\", \"attributes\": "
                             f"{{\"{STORE_MARKER}\": {SCHEMA_VERSION}}}}} to open its datasets")
        nodes = []
        with _quiet_zarr():
            root = _zarr().open_group(loc.zarr(), mode="r")
            for key in self.damaged_groups(only_damaged=False):
                try:
                    node = root[key]  # its path is its key in the store (`version`, `_subgroup` build on it)
                except Exception:  # damaged metadata: see damaged_groups
                    continue
                if hasattr(node, "groups"):
                    nodes.append((key, node))
            return committed(nodes, root.attrs, where=str(loc))

    def damaged_groups(self, only_damaged: bool = True) -> list[str]:
        """Keys in the store's root that look like datasets (a valid name, maybe versioned, with a
        zarr.json) whose metadata cannot be read; with `only_damaged=False`, every such key."""
        loc, out = self.location, []
        record = record_of(loc.attrs(""), str(loc))
        for key in loc.children(""):
            name = key.partition(VERSION_SEP)[0]
            if key == "zarr.json" or not is_valid_name(name) or loc.read_text(f"{key}/zarr.json") is None:
                continue
            if record is not None and record["current"].get(name) != key:
                continue  # not committed: never read (`verify` names it)
            if not only_damaged or loc.attrs(key) is None:
                out.append(key)
        if only_damaged and record is not None:  # a current version whose folder is gone
            out += [key for key in record["current"].values() if not loc.exists(key) and key not in out]
        return out

    def dataset_keys(self) -> list[str]:
        """The keys (`name~N`) of the committed dataset groups."""
        return [g.path for g in self._committed_datasets().values()]

    def datasets(self) -> list[str]:
        """Names of the complete datasets in the store."""
        return sorted(self._committed_datasets())

    def _group(self, dataset: str, pinned: bool = True):
        check_name("dataset", dataset)
        if pinned and dataset in self._pinned:
            return self._pinned[dataset]
        held = self._committed_datasets()
        if dataset not in held:
            damaged = [k for k in self.damaged_groups() if k.partition(VERSION_SEP)[0] == dataset]
            recorded = (record_of(self.location.attrs(""), str(self.location)) or {}).get("current", {}).get(dataset)
            if recorded is not None and not self.location.exists(recorded):
                raise StoreError(f"dataset {dataset!r} in {self.location} is damaged: its current version "
                                 f"({recorded}) is missing; import, extract or generate it again")
            if damaged:
                raise StoreError(f"dataset {dataset!r} in {self.location} is damaged: its metadata "
                                 f"({damaged[0]}/zarr.json) cannot be read; import, extract or generate it again "
                                 "(the new copy replaces the damaged one)")
            holds = ", ".join(sorted(held)) or "no dataset yet"
            raise StoreError(
                f"dataset {dataset!r} is not in the store {self.location}, which holds {holds} "
                "(`clipclap import` writes released features, `clipclap extract` those of videos, "
                "`clipclap demo` the demo)"
            )
        return held[dataset]

    def version(self, dataset: str) -> tuple:
        """What identifies the dataset's data now: the key and write id of its group, of each
        split and of each label-embedding matrix. Any write of any of them changes it."""
        g = self._group(dataset, pinned=False)
        parts = [(g.path, g.attrs.get("write_id") or g.attrs.get("created"))]
        for nodes in (self._splits(g), self._label_embeddings(g)):
            parts += sorted((n.path, n.attrs.get("write_id") or n.attrs.get("created")) for n in nodes.values())
        return tuple(parts)

    @contextlib.contextmanager
    def consistent_read(self, dataset: str) -> Iterator[None]:
        """Reads of `dataset` within the block find its group once (not on every read: on an
        object store each find lists the store), and the block ends in a StoreError, rather
        than with a mix of two versions, if another process wrote any part of the dataset
        meanwhile (also when a read failed because that write removed what it read)."""
        before = self.version(dataset)
        self._pinned[dataset] = self._group(dataset, pinned=False)
        try:
            yield
        except Exception:
            if self._changed(dataset, before):
                raise self._changed_error(dataset) from None
            raise
        finally:
            self._pinned.pop(dataset, None)
        if self._changed(dataset, before):
            raise self._changed_error(dataset)

    def _changed(self, dataset: str, before: tuple) -> bool:
        try:
            return self.version(dataset) != before
        except StoreError:  # removed meanwhile
            return True

    def _changed_error(self, dataset: str) -> StoreError:
        return StoreError(f"dataset {dataset!r} in {self.location} was written by another process while it "
                          "was being read; run the command again")

    def has_dataset(self, dataset: str) -> bool:
        return dataset in self.datasets()

    def info(self, dataset: str) -> dict[str, Any]:
        """The dataset group's attributes (classes, prompt names, provenance, ...)."""
        return dict(self._group(dataset).attrs)

    def read_videos(self, dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, labels, partition) of every video, checked (`_checked`)."""
        g = self._group(dataset)
        return (
            np.array(self._checked(dataset, g, g["videos/ids"], "ids", "videos/ids").tolist(), dtype=str),
            np.asarray(self._checked(dataset, g, g["videos/labels"], "labels", "videos/labels"), dtype=np.int64),
            np.asarray(self._checked(dataset, g, g["videos/partition"], "partition", "videos/partition"),
                       dtype=np.int8),
        )

    def _counts(self, g) -> tuple[int, int]:
        """(videos, classes) of a dataset group: the rows its arrays must have."""
        return int(g["videos/ids"].shape[0]), len(g.attrs.get("classes", []))

    def _values(self, g, node, kind: str,
                counts: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str | None]:
        """An array's values and what is wrong with them (unreadable: a missing or altered chunk
        fails its checksum; values a missing chunk reads as; non-finite features), or None. `g`:
        the dataset's group the array is of (`counts`: its `_counts`, when the caller has them)."""
        try:
            values = node[:]
        except Exception as e:  # zarr raises what its codecs raise: ValueError, OSError, ...
            return None, f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        videos, classes = counts or self._counts(g)
        problem = value_problem(kind, values, videos, classes)
        if problem and kind in ("features", "label_embeddings"):  # name the videos or classes
            ids = np.asarray(g["videos/ids"][:].tolist(), dtype=str) if kind == "features" else None
            problem = value_problem(kind, values, videos, classes, ids, list(g.attrs.get("classes", [])))
        return values, problem

    def _checked(self, dataset: str, g, node, kind: str, what: str,
                 counts: tuple[int, int] | None = None) -> np.ndarray:
        """The values of one of the dataset's arrays (of its group `g`), or a StoreError in one
        line naming the dataset, the array, what is wrong and the command that writes it again."""
        values, problem = self._values(g, node, kind, counts)
        if problem:
            raise StoreError(f"dataset {dataset!r} in {self.location}: {what} is damaged: {problem}; "
                             f"{self.repair_hint(dataset, what)}")
        return values

    def verify(self, dataset: str) -> list[dict[str, str]]:
        """Check every array of the dataset (reads only): one row per array with its `status`
        ('ok'; 'damaged', with the `problem` and the `repair` command; 'unchecked' for arrays
        written before clipclap checksummed them, whose values can only be range-checked)."""
        g = self._group(dataset, pinned=False)
        arrays = [(f"videos/{n}", g[f"videos/{n}"], n) for n in ("ids", "labels", "partition") if f"videos/{n}" in g]
        arrays += [(f"features/{n}", a, "features") for n, a in sorted(self._features(g).items())]
        arrays += [(f"label_embeddings/{n}", a, "label_embeddings")
                   for n, a in sorted(self._label_embeddings(g).items())]
        for name, sg in sorted(self._splits(g).items()):
            arrays += [(f"splits/{name}/{p}", sg[p], "split") for p in PARTITIONS]
        rows = []
        loc = self.location
        for sub in ("videos", "features", "label_embeddings"):  # an array folder whose metadata is gone
            record = record_of(loc.attrs(f"{g.path}/{sub}"), f"{loc}/{g.path}/{sub}")
            for child in loc.children(f"{g.path}/{sub}"):
                if record is not None and child not in record["current"].values():
                    continue  # not the store's (`strays` names it)
                metadata = loc.read_text(f"{g.path}/{sub}/{child}/zarr.json")
                if child != "zarr.json" and is_valid_name(child.partition(VERSION_SEP)[0]) and metadata is None:
                    rows.append({"dataset": dataset, "array": f"{sub}/{child}", "status": "damaged",
                                 "problem": "its metadata (zarr.json) is missing",
                                 "repair": self.repair_hint(dataset, f"{sub}/{child}")})
        for what, node, kind in arrays:
            checksummed = is_checksummed(node)
            missing = missing_chunks(node) if checksummed else 0
            problem = f"{missing} of {node.nchunks} chunks missing" if missing else None
            if problem is None:
                values, problem = self._values(g, node, kind)
                recorded = node.attrs.get("content_digest")
                if problem is None and recorded is not None and content_digest(values) != recorded:
                    problem = ("its content is not what was committed (its digest differs: a chunk was replaced, "
                               "for example by one copied from another store)")
            status = "damaged" if problem else ("ok" if checksummed else "unchecked")
            note = problem or ("" if checksummed else "no checksums (written by an earlier clipclap): values are "
                               "range-checked only; import or extract it again to checksum it")
            rows.append({"dataset": dataset, "array": what, "status": status, "problem": note,
                         "repair": self.repair_hint(dataset, what) if problem else ""})
        return rows

    def data_damaged(self, dataset: str) -> bool:
        """Whether `verify` finds any array of the dataset's data damaged: its videos, features or
        label embeddings (its splits are not counted: they are drawn from the data, and a write
        of the same data writes them again where they apply)."""
        return any(row["status"] == "damaged" and not row["array"].startswith("splits/")
                   for row in self.verify(dataset))

    def repair_hint(self, dataset: str, what: str) -> str:
        """The command that writes `what` (an array's name) of the dataset again."""
        info = dict(self._group(dataset).attrs)
        source, at = str(info.get("source", "")), f"--store {self.location}"
        if what.startswith("splits/"):
            split = what.split("/")[1]
            return f"write the split again (`clipclap split {dataset} --split {split} {at}`, as it was made)"
        if what.startswith("label_embeddings/"):
            name = what.split("/")[1]
            arr = self._label_embeddings(self._group(dataset)).get(name)
            if arr is not None and "encoder" in arr.attrs:  # written by `clipclap embed`
                encoder = arr.attrs["encoder"]
                return f"compute them again (`clipclap embed {dataset} --encoder {encoder} --as {name} {at}`)"
        if source.startswith("extract("):
            return f"extract it again (`clipclap extract {dataset} {at}`, with the options it was extracted with)"
        if source.startswith("synthetic"):
            return f"generate it again (`clipclap demo --no-train --dataset {dataset} {at}`)"
        return f"import it again (`clipclap import {dataset} {source or 'ROOT'} {at}`)"

    def feature_names(self, dataset: str) -> dict[str, dict[str, Any]]:
        g = self._group(dataset)
        if "features" not in g:
            return {}
        return {name: dict(arr.attrs) | {"shape": list(arr.shape)} for name, arr in self._features(g).items()}

    def _features(self, g) -> dict:
        if "features" not in g:
            return {}
        with _quiet_zarr():
            return committed(g["features"].arrays(), g["features"].attrs, plain_needs_complete=False,
                             where=f"{self.location}/{g.path}/features")

    def _label_embeddings(self, g) -> dict:
        if "label_embeddings" not in g:
            return {}
        with _quiet_zarr():
            return committed(g["label_embeddings"].arrays(), g["label_embeddings"].attrs, plain_needs_complete=False,
                             where=f"{self.location}/{g.path}/label_embeddings")

    def read_features(self, dataset: str, name: str) -> np.ndarray:
        g = self._group(dataset)
        array = self._features(g).get(name)
        if array is None:
            raise StoreError(
                f"dataset {dataset!r} has no {name!r} features in {self.location}; "
                f"it has: {', '.join(self.feature_names(dataset)) or '(none)'}"
            )
        return np.asarray(self._checked(dataset, g, array, "features", f"features/{name}"),
                          dtype=np.float32)

    def label_embedding_names(self, dataset: str) -> dict[str, list[int]]:
        return {name: list(arr.shape) for name, arr in self._label_embeddings(self._group(dataset)).items()}

    def label_embedding_record(self, dataset: str, name: str) -> dict[str, Any]:
        """What made label embedding `name`: {"encoder", "params", "templates"} as `clipclap embed`
        writes them, or as an imported dataset's bundle records them (its `provenance`); {} when
        nothing says (imported without a record)."""
        arr = self._label_embeddings(self._group(dataset)).get(name)
        if arr is None:
            raise StoreError(f"dataset {dataset!r} has no {name!r} label embeddings")
        attrs = dict(arr.attrs)
        made = attrs.get("provenance") if isinstance(attrs.get("provenance"), dict) else attrs
        return {k: made[k] for k in ("encoder", "params", "templates") if k in made}

    def read_label_embeddings(self, dataset: str, name: str) -> np.ndarray:
        g = self._group(dataset)
        arr = self._label_embeddings(g).get(name)
        if arr is None:
            raise StoreError(f"dataset {dataset!r} has no {name!r} label embeddings in {self.location}")
        return np.asarray(self._checked(dataset, g, arr, "label_embeddings", f"label_embeddings/{name}"),
                          dtype=np.float32)

    def _splits(self, g) -> dict:
        if "splits" not in g:
            return {}
        with _quiet_zarr():
            return committed(g["splits"].groups(), g["splits"].attrs,
                             where=f"{self.location}/{g.path}/splits")

    def split_names(self, dataset: str) -> list[str]:
        return sorted(self._splits(self._group(dataset)))

    def read_split(self, dataset: str, split: str) -> SplitData:
        group = self._group(dataset)
        g = self._splits(group).get(split)
        if g is None:
            names = self.split_names(dataset)
            # `split --split NAME` alone needs the class lists stored with the features
            stored = split in group.attrs.get("class_splits", {})
            raise SplitError(
                f"dataset {dataset!r} has no split {split!r} in {self.location}"
                + (f"; it has: {', '.join(names)}" if names else "")
                + f" (run `clipclap split {dataset} --split {split}"
                + ("`)" if stored else " --from DIR`, or draw one with `--seen N --unseen M`)")
            )
        attrs, counts = dict(g.attrs), self._counts(group)
        indices = {p: np.asarray(self._checked(dataset, group, g[p], "split", f"splits/{split}/{p}", counts),
                                 dtype=np.int64) for p in PARTITIONS}
        return SplitData(split, indices, {k: list(v) for k, v in attrs["classes"].items()}, attrs)

    # ---------------------------------------------------------------- writing
    def open_for_writing(self) -> None:
        """Before the first write: check that the location is a clipclap store, or make a new or
        empty one into one (anything else is refused), and finish what killed writes left
        (`writer`). Done before any long work, so that a location that is no store fails first."""
        with self.writer():
            pass

    def _claim(self) -> None:
        if not self._writable:
            self.location.claim(SCHEMA_VERSION)
            self._writable = True

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the store's writer lock for the block: one command writes the store at a time,
        from the read its write is based on to its commit, so no write is lost to another. A
        second writer waits, `on_wait` told once who holds it (host, pid, command), and gives up
        with a StoreError after `wait_s` seconds. Re-entrant (the write methods hold it too);
        readers never wait. On first hold, what killed writes left is finished or removed
        (`Location.tidy`). An object store has no lock: its writers must take turns."""
        key = str(self.location.recorded())
        if self._writer_depth or _HELD.get(key):  # this object, or another of this process, holds it
            self._writer_depth += 1
            try:
                yield
            finally:
                self._writer_depth -= 1
            return
        self._claim()
        with self._writer_lock():
            self._writer_depth, _HELD[key] = 1, 1
            try:
                if not self._tidied:
                    self._tidy()
                    self._tidied = True
                yield
            finally:
                self._writer_depth = 0
                _HELD.pop(key, None)

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        command = "clipclap " + " ".join(sys.argv[1:]) if sys.argv and "clipclap" in sys.argv[0] else ""
        try:
            with waiting(self.path / WRITER_LOCK, command, self.wait_s, self.on_wait):
                yield
        except LockWaitExpired as e:
            raise StoreError(f"the store {self.location} is being written by {e.holder}; gave up after "
                             f"{e.waited_s:g} s (wait longer with --wait SECONDS)") from None

    def _tidy(self) -> None:
        """Finish or roll back what killed writes left: in the root, and in each dataset's
        splits, label embeddings and features."""
        loc = self.location
        loc.tidy("")
        for key in self.dataset_keys():
            for part in ("splits", "label_embeddings", "features"):
                if loc.exists(f"{key}/{part}"):
                    loc.tidy(f"{key}/{part}")

    def _subgroup(self, dataset: str, name: str) -> str:
        """The key of the dataset's `name` group (`splits`, `label_embeddings`), created if missing."""
        g = self._group(dataset)
        if name not in g:
            _zarr().open_group(self.location.zarr(g.path), mode="a").require_group(
                name, attributes={RECORD: new_record()})
        return f"{g.path}/{name}"

    def write_dataset(self, dataset: str, bundle: FeatureBundle, attrs: dict[str, Any],
                      splits: dict[str, dict[str, Any]] | None = None, keep: tuple[str, ...] = ()) -> None:
        """Write (or replace) a whole dataset group atomically, with `splits` (name -> the
        arguments of `write_split` but the dataset and name) in the same commit, and the splits
        and label embeddings of the group it replaces that `keep` names (`split:NAME`,
        `label_embeddings:NAME`: derived data that still applies to the new data)."""
        zarr = _zarr()
        check_name("dataset", dataset)
        for name in [*bundle.features, *bundle.label_embeddings, *(splits or {})]:
            check_name("feature, label embedding or split", name)
        with self.writer():
            carried = self._read_derived(dataset, keep)
            with self.location.committing("", dataset) as staging:
                self._fill_dataset(zarr.open_group(staging, mode="w"), bundle, attrs, splits or {}, carried)

    def _fill_dataset(self, g, bundle: FeatureBundle, attrs: dict[str, Any], splits: dict[str, dict[str, Any]],
                      carried: dict[str, dict]) -> None:
        """Write a dataset group's arrays, each subgroup's version record, then its attributes
        (the commit stamp last). Each array records a digest of its content (`verify`)."""
        n = len(bundle.ids)
        v = g.require_group("videos")
        ids_values = np.asarray(bundle.ids, dtype=str)
        ids = v.create_array("ids", shape=(n,), dtype=str, chunks=(max(1, n),), **array_options("ids"))
        if n:
            ids[:] = ids_values
        ids.attrs.update({"content_digest": content_digest(ids_values)})
        _array(v, "labels", np.asarray(bundle.labels, dtype=np.int32), "labels")
        _array(v, "partition", np.asarray(bundle.partition, dtype=np.int8), "partition")
        f = g.require_group("features")
        for name, arr in bundle.features.items():
            chunk_rows = max(1, min(n, 4096))
            _array(f, name, np.ascontiguousarray(arr, dtype=np.float32), "features",
                   {"modality": name, "dim": int(arr.shape[1]), "source": attrs.get("source", ""),
                    "provenance": bundle.provenance.get("features", {}).get(name, {})},
                   chunks=(chunk_rows, arr.shape[1]))
        e = g.require_group("label_embeddings")
        for name, (arr, arr_attrs) in carried["label_embeddings"].items():
            _array(e, name, arr, "label_embeddings", arr_attrs)
        for name, arr in bundle.label_embeddings.items():  # with what made them, where the bundle says
            made = bundle.provenance.get("label_embeddings", {}).get(name)
            _array(e, name, np.ascontiguousarray(arr, dtype=np.float32), "label_embeddings",
                   {"provenance": made} if made else None)
        sg = g.require_group("splits")
        for name, kept in carried["splits"].items():
            _fill_split(sg.require_group(name), kept.indices, kept.classes, kept.attrs)
        for name, split in splits.items():
            _fill_split(sg.require_group(name), split["indices"], split["classes"], split["attrs"] | commit_stamp())
        for group, names in ((f, bundle.features), (e, [*carried["label_embeddings"], *bundle.label_embeddings]),
                             (sg, [*carried["splits"], *splits])):
            group.attrs.update({RECORD: new_record(names)})
        g.attrs.update({
            "classes": list(bundle.classes),
            "prompt_names": list(bundle.prompt_names),
            "class_splits": bundle.class_splits,
            "provenance": bundle.provenance,
            **attrs,
            **commit_stamp(),
        })

    def _read_derived(self, dataset: str, keep: tuple[str, ...]) -> dict[str, dict]:
        """The splits and label embeddings `keep` names, read from the dataset's current group."""
        out: dict[str, dict] = {"splits": {}, "label_embeddings": {}}
        for item in keep:
            part, _, name = item.partition(":")
            if part == "split":
                out["splits"][name] = self.read_split(dataset, name)
            else:
                arr = self._label_embeddings(self._group(dataset, pinned=False))[name]
                out["label_embeddings"][name] = (np.asarray(arr[:], dtype=np.float32), dict(arr.attrs))
        return out

    def write_label_embeddings(self, dataset: str, name: str, matrix: np.ndarray, attrs: dict[str, Any]) -> None:
        """Write (or replace) one text encoder's label embeddings (C, dim) atomically."""
        zarr = _zarr()
        check_name("label embedding", name)
        with self.writer():
            info = self.info(dataset)
            if matrix.shape[0] != len(info["classes"]):
                raise StoreError(f"{name} label embeddings have {matrix.shape[0]} rows, dataset {dataset!r} has "
                                 f"{len(info['classes'])} classes")
            values = np.ascontiguousarray(matrix, dtype=np.float32)
            with self.location.committing(self._subgroup(dataset, "label_embeddings"), name,
                                          plain_needs_complete=False) as staging:
                arr = zarr.create_array(staging, data=values, **array_options("label_embeddings"))
                arr.attrs.update({**attrs, "content_digest": content_digest(values), **commit_stamp()})

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
        check_name("split", split)
        with self.writer(), self.location.committing(self._subgroup(dataset, "splits"), split) as staging:
            _fill_split(zarr.open_group(staging, mode="w"), indices, classes, attrs | commit_stamp())

    def describe(self, dataset: str) -> dict[str, Any]:
        """What the store holds for a dataset (for `clipclap datasets show`)."""
        with self.consistent_read(dataset):
            return self._describe(dataset)

    def _describe(self, dataset: str) -> dict[str, Any]:
        info = self.info(dataset)
        ids, labels, _ = self.read_videos(dataset)
        splits = {}
        for name in self.split_names(dataset):
            s = self.read_split(dataset, name)
            splits[name] = {
                p: {"videos": len(idx), "classes": len(np.unique(labels[idx]))}
                for p, idx in s.indices.items()
            } | {"how": s.attrs.get("how", {})}
        return {
            "dataset": dataset,
            "store": str(self.location),
            "videos": len(ids),
            "classes": len(info["classes"]),
            "features": {k: v["shape"][1] for k, v in self.feature_names(dataset).items()},
            "label_embeddings": {k: v[1] for k, v in self.label_embedding_names(dataset).items()},
            "splits": splits,
            "class_splits": sorted(info.get("class_splits", {})),  # the lists `split --split NAME` can write
            "source": info.get("source", ""),
            "created": info.get("created", ""),
            "clipclap_version": info.get("clipclap_version", ""),
            "feature_provenance": info.get("provenance", {}).get("features", {}),
        }


def _fill_split(g, indices: dict[str, np.ndarray], classes: dict[str, list[int]], attrs: dict[str, Any]) -> None:
    """Write a split's arrays into the group `g`, then its attributes (`attrs` holds the commit
    stamp when `g` is committed by itself)."""
    for p in PARTITIONS:
        _array(g, p, np.asarray(indices[p], dtype=np.int32), "split")
    g.attrs.update({**attrs, "classes": {k: [int(c) for c in v] for k, v in classes.items()}})


def _array(group, name: str, values: np.ndarray, kind: str, attrs: dict[str, Any] | None = None, **options):
    """Create `group/name` holding `values` (checksummed, see `integrity.py`), its attributes
    with the digest of its content."""
    array = group.create_array(name, data=values, **array_options(kind), **options)
    array.attrs.update({**(attrs or {}), "content_digest": content_digest(values)})
    return array
