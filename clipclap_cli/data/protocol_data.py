"""Features, label embeddings and split of one dataset as tensors, and the protocol's subsets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from clipclap_cli.api import LABEL_PARTS
from clipclap_cli.data.splits import TRAINING_VIDEOS, check_scorable
from clipclap_cli.errors import StoreError
from clipclap_cli.store.feature_store import FeatureStore


@dataclass(frozen=True)
class EvalSet:
    """Videos to evaluate and the split's seen/unseen class ids."""

    videos: torch.Tensor
    seen: torch.Tensor
    unseen: torch.Tensor

    @property
    def classes(self) -> torch.Tensor:
        return torch.sort(torch.cat([self.seen, self.unseen])).values


@dataclass(frozen=True)
class TrainSet:
    """Training videos and the training classes (ascending id; a video's target is its position)."""

    videos: torch.Tensor
    classes: torch.Tensor


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

    def stage(self, stage: int) -> tuple[TrainSet, EvalSet]:
        """Training set and validation set of stage 1 or 2 (SPEC.md "Benchmarks and splits")."""
        val = EvalSet(torch.cat([self.indices["stage_1_val_seen"], self.indices["stage_1_val_unseen"]]),
                      self.classes["stage_1_train"], self.classes["stage_1_val_unseen"])
        classes = f"stage_{stage}_train"
        videos = torch.cat([self.indices[p] for p in TRAINING_VIDEOS[classes]])
        return TrainSet(videos, self.classes[classes]), val

    def test(self) -> EvalSet:
        return EvalSet(torch.cat([self.indices["stage_2_test_seen"], self.indices["stage_2_test_unseen"]]),
                       self.classes["stage_2_test_seen"], self.classes["stage_2_test_unseen"])


def label_matrix(store: FeatureStore, dataset: str, parts: tuple[str, ...] = LABEL_PARTS) -> np.ndarray:
    """The label embedding of every class (rows by class id): the `parts` side by side,
    [CLIP | CLAP] by default."""
    return np.concatenate([store.read_label_embeddings(dataset, p) for p in parts], axis=1)


def legacy_label_permutation(prompt_names: list[str]) -> np.ndarray:
    """The reference's sorted-key permutation (BASELINES.md 1.3): class id c gets row c of the
    embedding matrix stacked in sorted order of the embedding file's keys (the prompt names),
    instead of its own row. Returns, per class id, the class whose embedding it receives.

    Keys sort as Python's `sorted` does (case-sensitive), and class ids rank the original names
    the same way: that reproduces every count BASELINES.md 1.3 measured on the released files
    (UCF w2v 79 of 101 classes, ActivityNet 8, VGGSound 205, UCF CLIP/CLAP names 0)."""
    return np.array(sorted(range(len(prompt_names)), key=lambda i: prompt_names[i]), dtype=np.int64)


def load_protocol_data(store: FeatureStore, dataset: str, split: str, device: str = "cpu",
                       legacy_label_order: bool = False, label_parts: tuple[str, ...] = LABEL_PARTS) -> ProtocolData:
    """Read a dataset's features, label embeddings (`label_parts`, side by side) and split from
    the store into tensors.

    Classes get their own label embedding by name; `legacy_label_order` reproduces the
    reference's sorted-key misalignment instead (for matching old numbers). Everything comes
    from one version of the dataset, even while another process writes it (`consistent_read`)."""
    with store.consistent_read(dataset):
        split_data = store.read_split(dataset, split)
        info = store.info(dataset)
        _, labels, _ = store.read_videos(dataset)
        names = store.feature_names(dataset)
        for needed in ("video", "audio"):
            if needed not in names:
                raise StoreError(f"dataset {dataset!r} has no {needed} features "
                                 "(run `clipclap extract` or `clipclap import`)")
        class_text = label_matrix(store, dataset, label_parts)
        audio, video = store.read_features(dataset, "audio"), store.read_features(dataset, "video")
    dev = torch.device(device)
    if legacy_label_order:
        class_text = class_text[legacy_label_permutation(list(info["prompt_names"]))]

    def t(x, dtype=None):
        return torch.as_tensor(x, dtype=dtype).to(dev)

    classes = {k: sorted(v) for k, v in split_data.classes.items()}
    # a split written before `split` refused unscorable ones, or by hand: checked before any work
    check_scorable(split_data.indices, classes, labels, list(info["classes"]),
                   f"split {split!r} of dataset {dataset!r}")
    digest = content_digest(audio, video, class_text, labels,
                            *(split_data.indices[k] for k in sorted(split_data.indices)),
                            *(np.asarray(classes[k], dtype=np.int64) for k in sorted(classes)))
    return ProtocolData(
        dataset=dataset,
        split=split,
        audio=t(audio),
        video=t(video),
        class_text=t(class_text),
        labels=t(labels, torch.long),
        indices={k: t(v, torch.long) for k, v in split_data.indices.items()},
        classes={k: t(v, torch.long) for k, v in classes.items()},
        num_classes=len(info["classes"]),
        class_names=list(info["classes"]),
        digest=digest,
    )


def content_digest(*arrays: np.ndarray) -> str:
    """A digest of arrays' dtypes, shapes and values (BLAKE2b: ~1 GB/s, so ~0.05 s for UCF)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()
