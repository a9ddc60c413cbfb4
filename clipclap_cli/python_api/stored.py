"""A store's datasets as NumPy arrays, for a notebook (`clipclap_cli.api.open_store`).

A dataset is read whole, in one consistent read of the store (`FeatureStore.consistent_read`)
whose every array is checked as the commands check it (checksums, fill values, finite
features): a notebook gets the numbers `train` and `evaluate` read, or the one-line error they
would give. What the store keeps under versioned zarr keys (`demo~3/features/audio`) comes out
by plain names: features per modality, label embeddings per text encoder, splits by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipclap_cli.api import PARTITIONS
from clipclap_cli.data.splits import TRAINING_VIDEOS
from clipclap_cli.errors import ClipclapError
from clipclap_cli.store.feature_store import FeatureStore

#: The split a dataset table names by default (datasets.toml), taken when a dataset holds several
DEFAULT_SPLIT = "cls_split"
#: Video partitions by name: the five stored ones, and the training videos of each stage
VIDEO_PARTITIONS = (*PARTITIONS, *(p for p in TRAINING_VIDEOS if p not in PARTITIONS))


@dataclass(frozen=True)
class Split:
    """One protocol split: the videos of each partition and the class ids of each stage.

    `videos` maps each of `PARTITIONS` to sample indices (int64, into the dataset's arrays);
    `classes` maps each stage's class set (`stage_1_train`, `stage_1_val_unseen`,
    `stage_2_train`, `stage_2_test_seen`, `stage_2_test_unseen`, ...) to class ids (int64);
    `how` says how it was made (a class-split folder, or drawn with a seed)."""

    name: str
    videos: dict[str, np.ndarray]
    classes: dict[str, np.ndarray]
    how: dict[str, Any] = field(default_factory=dict)

    def partition(self, name: str) -> np.ndarray:
        """Sample indices of a partition: one of `PARTITIONS`, or `stage_1_train` /
        `stage_2_train` (each stage's training videos, as training reads them)."""
        if name in TRAINING_VIDEOS:
            return np.concatenate([self.videos[p] for p in TRAINING_VIDEOS[name]])
        if name not in self.videos:
            raise ClipclapError(f"no partition {name!r} in split {self.name!r}; the partitions are "
                                f"{', '.join(VIDEO_PARTITIONS)}")
        return self.videos[name]


@dataclass(frozen=True)
class Dataset:
    """A stored dataset as arrays, row i of every per-video array being video i.

    Attributes:
        name, store: the dataset's name and the store it was read from.
        ids: video ids (N,) str.  labels: class id per video (N,) int64.
        features: modality ("audio", "video") -> (N, dim) float32.
        class_names: classes by class id.  prompt_names: the names prompts were filled with.
        label_embeddings: text encoder ("clip", "clap") -> (C, dim) float32, row = class id.
        splits: split name -> `Split`.
        class_splits: the class lists the source came with (split name -> class set -> class
            names), from which `clipclap split DATASET --split NAME` writes a split.
        provenance: where the data came from (source, feature encoders and their weights).
    """

    name: str
    store: str
    ids: np.ndarray
    labels: np.ndarray
    features: dict[str, np.ndarray]
    class_names: list[str]
    prompt_names: list[str]
    label_embeddings: dict[str, np.ndarray]
    splits: dict[str, Split]
    provenance: dict[str, Any]
    class_splits: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def audio(self) -> np.ndarray:
        return self._modality("audio")

    @property
    def video(self) -> np.ndarray:
        return self._modality("video")

    def _modality(self, name: str) -> np.ndarray:
        if name not in self.features:
            raise ClipclapError(f"dataset {self.name!r} in {self.store} has no {name} features "
                                f"(it has: {', '.join(self.features) or 'none'})")
        return self.features[name]

    def split(self, name: str | None = None) -> Split:
        """A split by name; None: the only one, or `cls_split` (the default) among several."""
        if name is None:
            if len(self.splits) == 1:
                return next(iter(self.splits.values()))
            if DEFAULT_SPLIT in self.splits:
                return self.splits[DEFAULT_SPLIT]
            if not self.splits:
                raise ClipclapError(f"dataset {self.name!r} in {self.store} has no split yet "
                                    f"(`clipclap split {self.name}` writes one)")
            raise ClipclapError(f"dataset {self.name!r} has {len(self.splits)} splits "
                                f"({', '.join(sorted(self.splits))}): name one")
        if name not in self.splits:
            raise ClipclapError(f"dataset {self.name!r} has no split {name!r}; it has: "
                                f"{', '.join(sorted(self.splits)) or 'none'}")
        return self.splits[name]

    def partition(self, name: str, split: str | None = None) -> np.ndarray:
        """Sample indices of a partition of a split (see `Split.partition`)."""
        return self.split(split).partition(name)

    def classes(self, stage: str, split: str | None = None) -> np.ndarray:
        """Class ids of one of a split's class sets (e.g. `stage_2_test_unseen`)."""
        chosen = self.split(split)
        if stage not in chosen.classes:
            raise ClipclapError(f"split {chosen.name!r} has no class set {stage!r}; it has: "
                                f"{', '.join(chosen.classes)}")
        return chosen.classes[stage]

    def class_text(self, parts: tuple[str, ...] = ("clip", "clap")) -> np.ndarray:
        """The label embeddings `parts` side by side, (C, sum of dims), as a head receives them."""
        missing = [p for p in parts if p not in self.label_embeddings]
        if missing:
            raise ClipclapError(f"dataset {self.name!r} has no {', '.join(missing)} label embeddings "
                                f"(it has: {', '.join(self.label_embeddings) or 'none'})")
        return np.concatenate([self.label_embeddings[p] for p in parts], axis=1)


class Store:
    """A feature store opened for reading: its datasets by name (`open_store`)."""

    def __init__(self, where: str | Path):
        self.feature_store = FeatureStore(where)

    def __repr__(self) -> str:
        return f"Store({str(self.feature_store)!r})"

    def datasets(self) -> list[str]:
        """The names of the complete datasets the store holds."""
        return self.feature_store.datasets()

    def dataset(self, name: str | None = None) -> Dataset:
        """Every array of a dataset (None: the store's only dataset), read once and checked."""
        fs = self.feature_store
        if name is None:
            held = fs.datasets()
            if len(held) != 1:
                raise ClipclapError(f"name a dataset: the store {fs} holds {len(held)}"
                                    + (f" ({', '.join(held)})" if held else ""))
            name = held[0]
        with fs.consistent_read(name):
            info = fs.info(name)
            ids, labels, _ = fs.read_videos(name)
            described = fs.feature_names(name)
            features = {f: fs.read_features(name, f) for f in sorted(described)}
            embeddings = {p: fs.read_label_embeddings(name, p) for p in sorted(fs.label_embedding_names(name))}
            splits = {s: _split(fs.read_split(name, s)) for s in fs.split_names(name)}
        provenance = dict(info.get("provenance", {}))
        provenance.setdefault("source", info.get("source", ""))
        provenance.setdefault("features", {f: described[f].get("provenance", {}) for f in features})
        return Dataset(name=name, store=str(fs), ids=ids, labels=labels, features=features,
                       class_names=list(info["classes"]), prompt_names=list(info.get("prompt_names", info["classes"])),
                       label_embeddings=embeddings, splits=splits, provenance=provenance,
                       class_splits={k: {p: list(v) for p, v in lists.items()}
                                     for k, lists in info.get("class_splits", {}).items()})


def _split(stored) -> Split:
    """A `Split` from the store's `SplitData`."""
    return Split(stored.name, {p: np.asarray(v, dtype=np.int64) for p, v in stored.indices.items()},
                 {k: np.asarray(sorted(v), dtype=np.int64) for k, v in stored.classes.items()},
                 dict(stored.attrs.get("how", {})))


def open_store(where: str | Path) -> Store:
    """The store at `where` (a folder or an fsspec URL), to read its datasets as arrays."""
    return Store(where)
