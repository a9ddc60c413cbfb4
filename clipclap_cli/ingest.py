"""Bringing datasets into the store: import released features, generate, and write splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .api import FeatureBundle
from .config import DatasetCatalog, DatasetEntry
from .errors import ImportDataError, SplitError
from .splits import (
    ClassResolver,
    classes_by_stage,
    draw_split,
    find_split_folder,
    read_class_split,
    split_from_partitions,
)
from .store import FeatureStore


@dataclass(frozen=True)
class IngestResult:
    dataset: str
    videos: int
    classes: int
    unchanged: bool
    split: str | None


def _check_bundle(entry: DatasetEntry, bundle: FeatureBundle) -> None:
    n, c = len(bundle.ids), len(bundle.classes)
    if len(bundle.labels) != n or len(bundle.partition) != n:
        raise ImportDataError(f"dataset {entry.name!r}: ids, labels and partition lengths differ")
    if n and (bundle.labels.min() < 0 or bundle.labels.max() >= c):
        raise ImportDataError(f"dataset {entry.name!r}: a label is outside 0..{c - 1}")
    expected = {"video": entry.dims.video, "audio": entry.dims.audio}
    for name, arr in bundle.features.items():
        if arr.shape[0] != n or (name in expected and arr.shape[1] != expected[name]):
            raise ImportDataError(f"dataset {entry.name!r}: {name} features have shape {arr.shape}")
    for name, dim in entry.dims.text_parts:
        arr = bundle.label_embeddings.get(name)
        if arr is not None and arr.shape != (c, dim):
            raise ImportDataError(f"dataset {entry.name!r}: {name} label embeddings have shape {arr.shape}")


def store_bundle(store: FeatureStore, entry: DatasetEntry, bundle: FeatureBundle,
                 write_split: bool = True) -> IngestResult:
    """Write a bundle (unless the store already holds the identical one) and its default split."""
    from . import __version__

    _check_bundle(entry, bundle)
    fingerprint = bundle.provenance.get("fingerprint")
    stored = store.info(entry.name) if store.has_dataset(entry.name) else None
    # the same files read the same way: settings that change how they are read (class order,
    # prompt column) leave the files' fingerprint alone but change the classes or their names
    unchanged = (
        stored is not None
        and fingerprint is not None
        and stored.get("provenance", {}).get("fingerprint") == fingerprint
        and stored.get("classes") == list(bundle.classes)
        and stored.get("prompt_names") == list(bundle.prompt_names)
    )
    split = None
    if not unchanged:
        attrs = {"kind": entry.kind, "clipclap_version": __version__,
                 "source": bundle.provenance.get("source", ""),
                 "dims": {"video": entry.dims.video, "audio": entry.dims.audio, **dict(entry.dims.text_parts)}}
        if write_split and entry.split in bundle.class_splits:
            # validate the split before anything is written, so a bad split leaves the store as it was
            resolver = ClassResolver(bundle.classes, f"the classes of dataset {entry.name!r}")
            lists = bundle.class_splits[entry.split]
            classes = classes_by_stage(lists, resolver)
            indices = split_from_partitions(np.asarray(bundle.labels), np.asarray(bundle.partition), classes)
        store.write_dataset(entry.name, bundle, attrs)
        if write_split and entry.split in bundle.class_splits:
            store.write_split(entry.name, entry.split, indices, classes,
                              {"how": {"method": "class-split folder", "folder": entry.split,
                                       "source": bundle.provenance.get("source", "")}})
            split = entry.split
    return IngestResult(entry.name, len(bundle.ids), len(bundle.classes), unchanged, split)


def import_dataset(store: FeatureStore, catalog: DatasetCatalog, name: str, root: Path) -> IngestResult:
    """`clipclap import`: read a released-feature tree and write it (and its default split)."""
    entry = catalog.get(name)
    bundle = catalog.adapter(name).load_features(Path(root).expanduser())
    return store_bundle(store, entry, bundle)


def generate_dataset(store: FeatureStore, catalog: DatasetCatalog, name: str, seed: int | None = None) -> IngestResult:
    """Generate a dataset through its adapter (the demo benchmark) and write it like an import."""
    options = {} if seed is None else {"seed": seed}
    entry = catalog.get(name)
    bundle = catalog.adapter(name).load_features(None, **options)
    return store_bundle(store, entry, bundle)


def split_from_folder(store: FeatureStore, dataset: str, split: str, from_dir: Path | None = None) -> dict:
    """Write split `split` from the imported class lists, or from the class-split folder `from_dir`."""
    info = store.info(dataset)
    resolver = ClassResolver(info["classes"], f"the classes of dataset {dataset!r}")
    if from_dir is not None:
        folder = find_split_folder(Path(from_dir).expanduser(), split)
        lists, source = read_class_split(folder, resolver), str(folder)
    else:
        stored = info.get("class_splits", {})
        if split not in stored:
            raise SplitError(
                f"dataset {dataset!r} came without class-split folder {split!r}"
                + (f" (it has: {', '.join(sorted(stored))})" if stored else "")
                + "; pass --from DIR, or draw one with --seen N --unseen M --seed S"
            )
        lists, source = stored[split], f"{info.get('source', '')} (class-split/{split})"
    classes = classes_by_stage(lists, resolver)
    _, labels, partition = store.read_videos(dataset)
    indices = split_from_partitions(labels, partition, classes)
    how = {"method": "class-split folder", "folder": split, "source": source}
    store.write_split(dataset, split, indices, classes, {"how": how})
    return {p: len(v) for p, v in indices.items()}


def split_drawn(store: FeatureStore, dataset: str, split: str, seen: int, unseen: int, seed: int,
                val_unseen: int | None = None) -> dict:
    """Write a freshly drawn two-stage split (for datasets without benchmark files)."""
    info = store.info(dataset)
    _, labels, _ = store.read_videos(dataset)
    indices, classes, how = draw_split(labels, len(info["classes"]), seen, unseen, seed, val_unseen)
    store.write_split(dataset, split, indices, classes, {"how": how})
    return {p: len(v) for p, v in indices.items()}
