"""The stored samples `predict --dataset` scores: a split's partitions read once from the store
(ids, label names, audio and video features), checked to be features the model can take (the
widths it was built for, and the encoders its provenance names)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clipclap_cli.api import PARTITIONS
from clipclap_cli.errors import SplitError
from clipclap_cli.runs.trained import check_features
from clipclap_cli.store.feature_store import FeatureStore

#: the partitions scored by default: the test ones, in evaluation's order (seen, then unseen)
TEST_PARTITIONS = ("stage_2_test_seen", "stage_2_test_unseen")
ALL = "all"


@dataclass
class Samples:
    """Samples to score: their ids, label names (None for videos without one) and features."""

    ids: list[str]
    labels: list[str] | None
    audio: torch.Tensor
    video: torch.Tensor


def check_partitions(partitions: tuple[str, ...]) -> None:
    """Refuse a partition name that is none (before any work)."""
    unknown = [p for p in partitions if p not in (*PARTITIONS, ALL)]
    if unknown:
        raise SplitError(f"--partition {unknown[0]!r}: expected one of {', '.join((*PARTITIONS, ALL))}")


def stored_samples(store: FeatureStore, dataset: str, split: str, partitions: tuple[str, ...] = TEST_PARTITIONS,
                   model=None) -> Samples:
    """The videos of `partitions` of `split` (`("all",)`: every video), in that order, read in
    one consistent read; `model`: the TrainedModel they are for (its widths and encoders checked)."""
    check_partitions(partitions)
    with store.consistent_read(dataset):
        info = store.info(dataset)
        ids, labels, _ = store.read_videos(dataset)
        if ALL in partitions:
            rows = np.arange(len(ids))
        else:
            split_data = store.read_split(dataset, split)
            rows = np.concatenate([split_data.indices[p] for p in partitions])
        if model is not None:
            check_features(model, store, dataset, info)
        audio, video = store.read_features(dataset, "audio"), store.read_features(dataset, "video")
    names = list(info["classes"])
    return Samples([str(x) for x in ids[rows]], [names[c] for c in labels[rows]],
                   torch.from_numpy(audio[rows]), torch.from_numpy(video[rows]))
