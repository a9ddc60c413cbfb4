"""One dataset as a run reads it: features, label embeddings, labels and split as tensors, the
protocol's subsets and a digest of it all, from ONE consistent read that checks what it reads.

A command reads a dataset once (`load_protocol_data`) and hands the result down: to training
(trainer, stages), to evaluation (evaluate/evaluation.py), which go down from here and never
back for more. The checks are done inside the read, before anything uses the data: arrays
damaged or non-finite (the store), features missing, training classes without training videos
(`Expected.trainable`), a split that cannot be scored honestly, and data other than a run was
trained on (`Expected.digest`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from clipclap_cli.api import LABEL_PARTS
from clipclap_cli.data.splits import TRAINING_VIDEOS, check_scorable, check_training_videos
from clipclap_cli.errors import RunError, StoreError
from clipclap_cli.store.feature_store import FeatureStore


@dataclass(frozen=True)
class EvalSet:
    """Videos to evaluate, the split's seen/unseen class ids, and both together (ascending)."""

    videos: torch.Tensor
    seen: torch.Tensor
    unseen: torch.Tensor
    classes: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:  # made with the set, so that evaluation only reads it
        object.__setattr__(self, "classes", torch.sort(torch.cat([self.seen, self.unseen])).values)


@dataclass(frozen=True)
class TrainSet:
    """Training videos and the training classes (ascending id; a video's target is its position)."""

    videos: torch.Tensor
    classes: torch.Tensor


@dataclass(frozen=True)
class ProtocolSets:
    """The protocol's subsets of a dataset (SPEC.md "Benchmarks and splits"), made by the read:
    validation (stage 1's), test (stage 2's), and the training set of each stage."""

    val: EvalSet
    test: EvalSet
    train: dict[int, TrainSet]


@dataclass(frozen=True)
class Expected:
    """What the caller knows the data must be, checked inside the read (`load_protocol_data`).

    `digest`: the digest a run recorded when it started (None: it recorded none, as runs of
    clipclaps before the digest; they are taken as they are), `run` the run's folder, named in the
    refusal. `trainable`: the data is read to train on, so every training class must have
    training videos (class-balanced sampling draws each)."""

    run: Path | None = None
    digest: str | None = None
    trainable: bool = False


@dataclass
class ProtocolData:
    """One dataset, held as tensors on one device."""

    dataset: str
    split: str
    audio: torch.Tensor
    video: torch.Tensor
    class_text: torch.Tensor
    labels: torch.Tensor
    indices: dict[str, torch.Tensor]
    classes: dict[str, torch.Tensor]
    num_classes: int
    class_names: list[str]
    #: digest of every number read (features, label embeddings, labels, split): a run records it,
    #: so that resuming or evaluating it on data that has changed since is refused, not mixed
    digest: str = ""
    #: the label embeddings side by side in `class_text`: [name, width] in LABEL_PARTS order
    text_parts: list[list] = field(default_factory=list)
    sets: ProtocolSets = field(init=False)

    def __post_init__(self) -> None:
        self.sets = protocol_sets(self.indices, self.classes)

    @property
    def dims(self) -> dict:
        """The input widths a head is built for (what a run records as its `dims`)."""
        return {"audio": self.audio.shape[1], "video": self.video.shape[1], "text_parts": self.text_parts}

    def stage(self, stage: int) -> tuple[TrainSet, EvalSet]:
        """Training set and validation set of stage 1 or 2 (made once, by the read)."""
        return self.sets.train[stage], self.sets.val

    def test(self) -> EvalSet:
        return self.sets.test


def protocol_sets(indices: dict[str, torch.Tensor], classes: dict[str, torch.Tensor]) -> ProtocolSets:
    """Validation, test and the stages' training sets from a split's indices and classes."""
    val = EvalSet(torch.cat([indices["stage_1_val_seen"], indices["stage_1_val_unseen"]]),
                  classes["stage_1_train"], classes["stage_1_val_unseen"])
    test = EvalSet(torch.cat([indices["stage_2_test_seen"], indices["stage_2_test_unseen"]]),
                   classes["stage_2_test_seen"], classes["stage_2_test_unseen"])
    train = {stage: TrainSet(torch.cat([indices[p] for p in TRAINING_VIDEOS[f"stage_{stage}_train"]]),
                             classes[f"stage_{stage}_train"]) for stage in (1, 2)}
    return ProtocolSets(val, test, train)


def legacy_label_permutation(prompt_names: list[str]) -> np.ndarray:
    """The reference's sorted-key permutation (BASELINES.md 1.3): class id c gets row c of the
    embedding matrix stacked in sorted order of the embedding file's keys (the prompt names),
    instead of its own row. Returns, per class id, the class whose embedding it receives.

    Keys sort as Python's `sorted` does (case-sensitive), and class ids rank the original names
    the same way: that reproduces every count BASELINES.md 1.3 measured on the released files
    (UCF w2v 79 of 101 classes, ActivityNet 8, VGGSound 205, UCF CLIP/CLAP names 0)."""
    return np.array(sorted(range(len(prompt_names)), key=lambda i: prompt_names[i]), dtype=np.int64)


def load_protocol_data(store: FeatureStore, dataset: str, split: str, device: str = "cpu",
                       legacy_label_order: bool = False, label_parts: tuple[str, ...] | None = LABEL_PARTS,
                       expected: Expected | None = None) -> ProtocolData:
    """Read a dataset's features, label embeddings (`label_parts`, side by side; None: every one
    the store holds, as a new run takes them), labels and split from the store into tensors, each
    array once, and check them (`expected`: what the caller knows the data must be) before
    anything uses them.

    Classes get their own label embedding by name; `legacy_label_order` reproduces the
    reference's sorted-key misalignment instead (for matching old numbers). Everything comes
    from one version of the dataset, even while another process writes it (`consistent_read`);
    the store refuses a damaged or non-finite array as it reads it."""
    with store.consistent_read(dataset):
        split_data = store.read_split(dataset, split)
        info = store.info(dataset)
        _, labels, _ = store.read_videos(dataset)
        names = store.feature_names(dataset)
        missing = [n for n in ("audio", "video") if n not in names]
        if missing:
            raise StoreError(f"dataset {dataset!r} in {store} lacks {' and '.join(missing)} features "
                             "(run `clipclap import` or `clipclap extract` first)")
        if label_parts is None:
            held = store.label_embedding_names(dataset)
            label_parts = tuple(n for n in LABEL_PARTS if n in held)
        parts = [store.read_label_embeddings(dataset, p) for p in label_parts]
        class_text = np.concatenate(parts, axis=1) if parts else np.zeros((len(info["classes"]), 0), np.float32)
        audio, video = store.read_features(dataset, "audio"), store.read_features(dataset, "video")
    dev = torch.device(device)
    expected = expected or Expected()
    if legacy_label_order:
        class_text = class_text[legacy_label_permutation(list(info["prompt_names"]))]
    classes = {k: sorted(v) for k, v in split_data.classes.items()}
    class_names, where = list(info["classes"]), f"split {split!r} of dataset {dataset!r}"
    if expected.trainable:  # first: a class without training videos would read as unscorable below
        check_training_videos(split_data.indices, split_data.classes, labels, class_names, where)
    # a split written before `split` refused unscorable ones, or by hand: checked before any work
    check_scorable(split_data.indices, classes, labels, class_names, where)
    digest = content_digest(audio, video, class_text, labels,
                            *(split_data.indices[k] for k in sorted(split_data.indices)),
                            *(np.asarray(classes[k], dtype=np.int64) for k in sorted(classes)))
    check_same_data(expected, digest, dataset, split)

    def t(x, dtype=None):
        return torch.as_tensor(x, dtype=dtype).to(dev)

    return ProtocolData(
        dataset=dataset,
        split=split,
        audio=t(audio),
        video=t(video),
        class_text=t(class_text),
        labels=t(labels, torch.long),
        indices={k: t(v, torch.long) for k, v in split_data.indices.items()},
        classes={k: t(v, torch.long) for k, v in classes.items()},
        num_classes=len(class_names),
        class_names=class_names,
        digest=digest,
        text_parts=[[name, part.shape[1]] for name, part in zip(label_parts, parts, strict=True)],
    )


class DatasetReads:
    """A command's reads of one store: a dataset that several runs train on is read once.

    The plan reads the data first (every label embedding the store holds, checked to train on);
    each run trained in this process then asks for the data its spec names and gets that read back,
    checked against what the run recorded (`Expected.digest`), unless it names other data (another
    split, device, label order or label embeddings), which is read anew. The last read is kept."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self._kept: tuple[tuple, bool, ProtocolData] | None = None

    def read(self, dataset: str, split: str, device: str = "cpu", legacy_label_order: bool = False,
             label_parts: tuple[str, ...] | None = None, expected: Expected | None = None) -> ProtocolData:
        """`load_protocol_data` of this store, or the kept read when it is of the same data."""
        expected = expected or Expected()
        if self._kept is not None:
            key, trainable, data = self._kept
            same = key == (dataset, split, str(device), legacy_label_order) and (
                label_parts is None or tuple(label_parts) == tuple(n for n, _ in data.text_parts))
            if same and (trainable or not expected.trainable):
                check_same_data(expected, data.digest, dataset, split)
                return data
        data = load_protocol_data(self.store, dataset, split, device, legacy_label_order, label_parts, expected)
        self._kept = ((dataset, split, str(device), legacy_label_order), expected.trainable, data)
        return data

    def forget(self) -> None:
        """Let the kept read go (its tensors are freed once nothing else holds them)."""
        self._kept = None


def check_same_data(expected: Expected, digest: str, dataset: str, split: str) -> None:
    """Refuse data other than a run was started on (`expected.digest`): its features, label
    embeddings or split changed since. A run that recorded no digest is taken as it is."""
    if expected.digest and expected.digest != digest:
        raise RunError(f"run {expected.run} was trained on other {dataset!r} data (split {split!r}) than the store "
                       "now holds: its features, label embeddings or split changed since; train a new run on this "
                       "data (another --run folder), or point --store at the data the run was trained on")


def content_digest(*arrays: np.ndarray) -> str:
    """A digest of arrays' dtypes, shapes and values (BLAKE2b: ~1 GB/s, so ~0.05 s for UCF)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()
