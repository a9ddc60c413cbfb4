"""The stored samples `predict --dataset` scores: a split's partitions read once from the store
(ids, label names, audio and video features), checked to be features the model can take (the
widths it was built for, and the encoders its provenance names)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clipclap_cli.api import PARTITIONS
from clipclap_cli.errors import RunError, SplitError
from clipclap_cli.store.feature_store import FeatureStore

#: the partitions scored by default: the test ones, in evaluation's order (seen, then unseen)
TEST_PARTITIONS = ("stage_2_test_seen", "stage_2_test_unseen")
ALL = "all"
#: what identifies the features of a modality: the encoder, its weights, how its input was taken
IDENTITY = ("encoder", "model", "pretrained", "weights_sha256", "random_weights", "frames")


@dataclass
class Samples:
    """Samples to score: their ids, label names (None for videos without one) and features."""

    ids: list[str]
    labels: list[str] | None
    audio: torch.Tensor
    video: torch.Tensor


def stored_samples(store: FeatureStore, dataset: str, split: str, partitions: tuple[str, ...] = TEST_PARTITIONS,
                   model=None) -> Samples:
    """The videos of `partitions` of `split` (`("all",)`: every video), in that order, read in
    one consistent read; `model`: the TrainedModel they are for (its widths and encoders checked)."""
    unknown = [p for p in partitions if p not in (*PARTITIONS, ALL)]
    if unknown:
        raise SplitError(f"--partition {unknown[0]!r}: expected one of {', '.join((*PARTITIONS, ALL))}")
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


def check_features(model, store: FeatureStore, dataset: str, info: dict) -> None:
    """Refuse features the model cannot take: of other widths than it was built for, or from
    other encoders (or weights, or frame recipe) than its provenance names."""
    held = store.feature_names(dataset)
    for modality in ("audio", "video"):
        if modality not in held:
            raise RunError(f"dataset {dataset!r} in {store} has no {modality} features "
                           "(run `clipclap import` or `clipclap extract` first)")
        width, wanted = held[modality]["shape"][1], model.spec.dims[modality]
        if width != wanted:
            raise RunError(f"{model.source} takes {wanted}-d {modality} features; dataset {dataset!r} in {store} "
                           f"has {width}-d ones")
    recorded = (info.get("provenance") or {}).get("features") or {}
    for modality in ("audio", "video"):
        ours, theirs = identity(model.features.get(modality)), identity(recorded.get(modality))
        if ours != theirs:
            raise RunError(f"dataset {dataset!r} in {store} holds {modality} features of {describe(theirs)}; "
                           f"{model.source} was trained on features of {describe(ours)}: extract the dataset "
                           "with the model's encoders (`clipclap extract`) or use a model trained on these")


def identity(provenance: dict | None) -> dict:
    """What identifies a modality's features (`IDENTITY`, and the frame recipe's name)."""
    provenance = provenance or {}
    out = {k: provenance[k] for k in IDENTITY if k in provenance}
    recipe = provenance.get("frame_recipe")
    if isinstance(recipe, dict) and "name" in recipe:
        out["frame_recipe"] = recipe["name"]
    return out


def describe(ident: dict) -> str:
    """An identity in words: `encoder clip (weights sha256 1a2b3c4d...)`, or an unknown origin."""
    if not ident:
        return "no recorded encoder (imported or generated)"
    text = f"encoder {ident.get('encoder', '?')}"
    weights = ident.get("weights_sha256") or ident.get("pretrained") or ident.get("model")
    if weights:
        text += f" (weights {str(weights)[:16]})"
    if ident.get("random_weights"):
        text += " (random weights)"
    if "frame_recipe" in ident:
        text += f", frame recipe {ident['frame_recipe']}"
    return text
