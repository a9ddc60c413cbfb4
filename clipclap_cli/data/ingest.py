"""Bringing datasets into the store: import released features, generate, and write splits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipclap_cli.api import FeatureBundle
from clipclap_cli.data.datasets_toml import DatasetEntry
from clipclap_cli.data.splits import (
    ClassResolver,
    check_scorable,
    classes_by_stage,
    draw_split,
    find_split_folder,
    read_class_split,
    split_from_partitions,
)
from clipclap_cli.errors import ImportDataError, SplitError, StoreError
from clipclap_cli.plugins.contracts import check_bundle_form
from clipclap_cli.plugins.registry import DatasetCatalog
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.store.integrity import value_problem


@dataclass(frozen=True)
class IngestResult:
    dataset: str
    videos: int
    classes: int
    unchanged: bool
    split: str | None
    kept: tuple[str, ...] = ()
    "Splits and label embeddings of the replaced data carried over (`split:NAME`, `label_embeddings:NAME`)"
    dropped: tuple[str, ...] = ()
    "Those that no longer applied and were dropped (only with `replace`)"


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
    # non-finite numbers would train to a NaN loss, or to a plausible wrong result: refused by name
    ids = np.asarray(bundle.ids, dtype=str)
    for kind, arrays in (("features", bundle.features), ("label_embeddings", bundle.label_embeddings)):
        for name, arr in arrays.items():
            problem = value_problem(kind, np.asarray(arr), n, c, ids, list(bundle.classes))
            if problem:
                what = f"{name} features" if kind == "features" else f"{name} label embeddings"
                raise ImportDataError(f"dataset {entry.name!r}: {what}: {problem}; nothing was written")


def derived_data(store: FeatureStore, dataset: str, bundle: FeatureBundle,
                 rewritten: set[str]) -> tuple[list[str], dict[str, str]]:
    """What of the dataset's stored splits and label embeddings still applies to `bundle`, its
    new data (`kept`), and what does not, with why (`dropped`). A split indexes videos, so it
    applies while the videos (ids, classes, partitions) are the same and in the same order; label
    embeddings are one row per class, so they apply while the classes and their prompt names
    are. Those the new data brings itself (`rewritten`) are neither."""
    info = store.info(dataset)
    ids, labels, partition = store.read_videos(dataset)
    same_classes = info["classes"] == list(bundle.classes)
    same_videos = (same_classes and ids.tolist() == list(bundle.ids)
                   and np.array_equal(labels, np.asarray(bundle.labels))
                   and np.array_equal(partition, np.asarray(bundle.partition)))
    kept, dropped = [], {}
    for name in store.split_names(dataset):
        if f"split:{name}" in rewritten:
            continue
        if same_videos:
            kept.append(f"split:{name}")
        else:
            dropped[f"split:{name}"] = "the videos changed"
    for name in store.label_embedding_names(dataset):
        if f"label_embeddings:{name}" in rewritten:
            continue
        if same_classes and info.get("prompt_names") == list(bundle.prompt_names):
            kept.append(f"label_embeddings:{name}")
        else:
            dropped[f"label_embeddings:{name}"] = "the classes or their prompt names changed"
    return kept, dropped


def _describe_derived(item: str) -> str:
    part, _, name = item.partition(":")
    return f"split {name!r}" if part == "split" else f"{name} label embeddings"


def store_bundle(store: FeatureStore, entry: DatasetEntry, bundle: FeatureBundle,
                 write_split: bool = True, replace: bool = False) -> IngestResult:
    """Write a bundle (unless the store already holds the identical one) and its default split,
    in one commit. The splits and label embeddings of the data it replaces are kept where they
    still apply (`derived_data`); where some do not, the write is refused unless `replace`.
    An identical bundle whose default split is missing (a store written by a clipclap that
    committed the two apart, killed in between) gets the split."""
    with store.writer():  # from the reads that decide what to keep to the commit: no write lost between
        return _store_bundle(store, entry, bundle, write_split, replace)


def _store_bundle(store: FeatureStore, entry: DatasetEntry, bundle: FeatureBundle, write_split: bool,
                  replace: bool) -> IngestResult:
    from clipclap_cli import __version__

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
        # a copy that lost label embeddings the data holds is written again, as a damaged one is
        and set(bundle.label_embeddings) <= set(store.label_embedding_names(entry.name))
        # a damaged copy of the same data is written again: that is how `verify`'s repair works
        and not store.data_damaged(entry.name)
    )
    splits = {}
    if write_split and entry.split in bundle.class_splits:
        # validate the split before anything is written, so a bad split leaves the store as it was
        resolver = ClassResolver(bundle.classes, f"the classes of dataset {entry.name!r}")
        lists = bundle.class_splits[entry.split]
        classes = classes_by_stage(lists, resolver)
        indices = split_from_partitions(np.asarray(bundle.labels), np.asarray(bundle.partition), classes)
        check_scorable(indices, classes, np.asarray(bundle.labels), list(bundle.classes),
                       f"split {entry.split!r} of dataset {entry.name!r}")
        how = {"method": "class-split folder", "folder": entry.split, "source": bundle.provenance.get("source", "")}
        splits[entry.split] = {"indices": indices, "classes": classes, "attrs": {"how": how}}
    result = IngestResult(entry.name, len(bundle.ids), len(bundle.classes), unchanged, None)
    if unchanged:
        missing = [name for name in splits if name not in store.split_names(entry.name)]
        for name in missing:
            store.write_split(entry.name, name, **splits[name])
        return dataclasses.replace(result, split=missing[0] if missing else None)
    kept, dropped = [], {}
    if stored is not None:
        rewritten = {f"split:{n}" for n in splits} | {f"label_embeddings:{n}" for n in bundle.label_embeddings}
        try:
            kept, dropped = derived_data(store, entry.name, bundle, rewritten)
        except StoreError:  # the stored videos are damaged: what applies to them cannot be told
            derived = ([f"split:{n}" for n in store.split_names(entry.name)]
                       + [f"label_embeddings:{n}" for n in store.label_embedding_names(entry.name)])
            dropped = {k: "the stored copy is damaged" for k in derived if k not in rewritten}
        if dropped and not replace:
            lost = "; ".join(f"{_describe_derived(k)} ({why})" for k, why in dropped.items())
            raise StoreError(f"dataset {entry.name!r} in {store} holds other data than this; replacing it would "
                             f"drop {lost}. Pass --replace to replace it anyway, or import into another --store")
    attrs = {"kind": entry.kind, "clipclap_version": __version__,
             "source": bundle.provenance.get("source", ""),
             "dims": {"video": entry.dims.video, "audio": entry.dims.audio, **dict(entry.dims.text_parts)}}
    store.write_dataset(entry.name, bundle, attrs, splits=splits, keep=tuple(kept))
    return dataclasses.replace(result, split=next(iter(splits), None), kept=tuple(kept), dropped=tuple(dropped))


def import_dataset(store: FeatureStore, catalog: DatasetCatalog, name: str, root: Path,
                   replace: bool = False) -> IngestResult:
    """`clipclap import`: read a released-feature tree and write it (and its default split).
    The store is checked (and made) first, so a location that is no store fails before the
    tree is read; a tree inside the store is refused."""
    entry = catalog.get(name)
    root = Path(root).expanduser()
    store.open_for_writing()
    _refuse_tree_in_store(store, root)
    adapter = catalog.adapter(name)
    bundle = check_bundle_form(adapter, adapter.load_features(root))
    return store_bundle(store, entry, bundle, replace=replace)


def _refuse_tree_in_store(store: FeatureStore, root: Path) -> None:
    """A tree to import that lies inside the store: refuse it (the store's folder is the store's)."""
    if store.path is None or not root.exists():
        return
    a, b = root.resolve(), store.path.resolve()
    if a == b or b in a.parents:
        raise StoreError(f"the tree to import ({root}) lies inside the store ({store.path}); keep the store "
                         "in a folder of its own (for example --store clipclap.zarr)")


def generate_dataset(store: FeatureStore, catalog: DatasetCatalog, name: str, seed: int | None = None,
                     replace: bool = False) -> IngestResult:
    """Generate a dataset through its adapter (the demo benchmark) and write it like an import."""
    options = {} if seed is None else {"seed": seed}
    entry = catalog.get(name)
    store.open_for_writing()  # a location that is no store fails before the data is generated
    adapter = catalog.adapter(name)
    bundle = check_bundle_form(adapter, adapter.load_features(None, **options))
    return store_bundle(store, entry, bundle, replace=replace)


def split_from_folder(store: FeatureStore, dataset: str, split: str, from_dir: Path | None = None) -> dict:
    """Write split `split` from the imported class lists, or from the class-split folder `from_dir`."""
    with store.writer():  # from the read the split is drawn from to its commit
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
        check_scorable(indices, classes, labels, info["classes"], f"split {split!r} of dataset {dataset!r}")
        how = {"method": "class-split folder", "folder": split, "source": source}
        store.write_split(dataset, split, indices, classes, {"how": how})
        return {p: len(v) for p, v in indices.items()}


def split_drawn(store: FeatureStore, dataset: str, split: str, seen: int, unseen: int, seed: int,
                val_unseen: int | None = None) -> dict:
    """Write a freshly drawn two-stage split (for datasets without benchmark files)."""
    with store.writer():  # from the read the split is drawn from to its commit
        info = store.info(dataset)
        _, labels, _ = store.read_videos(dataset)
        indices, classes, how = draw_split(labels, len(info["classes"]), seen, unseen, seed, val_unseen)
        check_scorable(indices, classes, labels, info["classes"], f"the drawn split {split!r} of dataset {dataset!r}")
        store.write_split(dataset, split, indices, classes, {"how": how})
        return {p: len(v) for p, v in indices.items()}
