"""The `synthetic` format: the generated demo benchmark (UCF-shaped, learnable, no download)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipclap_cli.api import PARTITIONS, DatasetAdapter, FeatureBundle, FeatureDims, KindExample

LABEL_NOISE = 0.05
"Noise added to each label embedding (relative to its class signal) before it is normalised"


@dataclass(frozen=True)
class ClassDraw:
    """The benchmark's classes as its generator draws them, before any video."""

    classes: list[str]
    prompt_names: list[str]
    latent: np.ndarray
    "(C, latent_dim) each class's latent vector"
    maps: dict[str, np.ndarray]
    "video, audio and each label part -> its (latent_dim, width) linear map"
    train: np.ndarray
    val_unseen: np.ndarray
    test_unseen: np.ndarray
    counts: np.ndarray
    "videos per class"
    label_embeddings: dict[str, np.ndarray]
    "label part -> (C, width) float32, unit rows"


def draw_classes(rng: np.random.Generator, p: Any, dims: FeatureDims) -> ClassDraw:
    """Draw the classes from `rng` (fresh from the seed), in the one order the generator has:
    latents, maps, class split, video counts, label embeddings. The adapter goes on drawing the
    videos from the same `rng`; the demo's text model (`demo-text`) calls it alone, so that both
    hold the same label embeddings by construction. `p`: the synthetic Params (or any object
    with their class-count and latent fields)."""
    n_cls = p.train_classes + p.val_unseen_classes + p.test_unseen_classes
    latent = rng.standard_normal((n_cls, p.latent_dim))
    maps = {name: rng.standard_normal((p.latent_dim, d)) / np.sqrt(p.latent_dim)
            for name, d in (("video", dims.video), ("audio", dims.audio), *dims.text_parts)}
    classes = [f"class_{i:03d}" for i in range(n_cls)]
    order = rng.permutation(n_cls)
    counts = rng.integers(int(p.videos_per_class * 0.7), int(p.videos_per_class * 1.3) + 1, size=n_cls)
    emb = {name: label_rows(latent, maps[name], rng) for name, _ in dims.text_parts}
    return ClassDraw(
        classes=classes, prompt_names=[n.replace("_", " ") for n in classes], latent=latent, maps=maps,
        train=np.sort(order[: p.train_classes]),
        val_unseen=np.sort(order[p.train_classes: p.train_classes + p.val_unseen_classes]),
        test_unseen=np.sort(order[p.train_classes + p.val_unseen_classes:]),
        counts=counts, label_embeddings=emb)


def label_rows(latent: np.ndarray, mapping: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The label embeddings of classes with latent vectors `latent` (C, latent_dim): each mapped
    by a label part's `mapping`, with a little noise from `rng`, L2-normalised; (C, width) float32.
    The benchmark's classes and the new names `demo-text` embeds go through this one function."""
    e = latent @ mapping + LABEL_NOISE * rng.standard_normal((latent.shape[0], mapping.shape[1]))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


class SyntheticBenchmark(DatasetAdapter):
    """A generated benchmark shaped like UCF-GZSL (cls_split) that behaves like CLIP and CLAP features.

    Every class has a latent vector c; each label embedding is a fixed random linear map of it
    (CLIP's and CLAP's text embeddings of the class). A video's CLIP-like feature mixes two views
    of its class, each the class vector plus its own noise: one mapped by the CLIP text map (so
    the feature lies near the CLIP text embedding of its class: zero-shot transfer, as CLIP's
    image-text alignment gives) and one by a map of its own (what a head can learn from seen
    classes and carry to unseen ones); plus a constant offset (CLIP's modality gap). The CLAP-like
    audio feature is built the same way with CLAP's maps and other noise. The training-free
    `zeroshot` head reads the aligned views only; a trained head can combine all four. The label
    embeddings record their text model, `demo-text` (encoders_demo.py), which draws the same
    classes (`draw_classes`) and embeds new names through the same maps.
    """

    kind = "synthetic"
    description = "Deterministic synthetic benchmark (the built-in demo)"

    @dataclass(frozen=True)
    class Params:
        seed: int = 0
        "Generator seed (same seed, same benchmark)"
        train_classes: int = 30
        "Stage-1 training classes"
        val_unseen_classes: int = 12
        "Stage-1 validation-unseen classes"
        test_unseen_classes: int = 6
        "Stage-2 test-unseen classes"
        videos_per_class: int = 140
        "Mean videos per class"
        latent_dim: int = 24
        "Width of the shared latent class vectors"
        noise: float = 1.2
        "Per-video noise of the learnable view, relative to the class signal"
        aligned_noise: float = 4.0
        "Per-video noise of the view aligned with the label embeddings (zero-shot difficulty)"
        aligned_weight: float = 0.5
        "Share of the aligned view in each feature (the rest is the learnable view)"
        modality_gap: float = 0.5
        "Length of the constant offset between each modality's features and its text embeddings"

    @classmethod
    def example(cls, folder: Path) -> KindExample:
        """Eight small classes at small widths: generated, nothing is written to `folder`."""
        return KindExample({"train_classes": 4, "val_unseen_classes": 2, "test_unseen_classes": 2,
                            "videos_per_class": 6, "dims": {"audio": 12, "video": 10, "clip": 8, "clap": 6}})

    def load_features(self, root: Path | None, **options) -> FeatureBundle:
        from .encoders_demo import text_model_record  # it imports this module

        p = self.params
        seed = int(options.get("seed", p.seed))
        rng = np.random.default_rng(seed)
        dims = self.entry.dims
        drawn = draw_classes(rng, p, dims)  # first: the videos are drawn after the classes, from the same rng
        classes, n_cls = drawn.classes, len(drawn.classes)
        train, val_unseen, test_unseen = drawn.train, drawn.val_unseen, drawn.test_unseen
        labels, parts = [], []
        code = {name: i for i, name in enumerate(PARTITIONS)}
        for c in range(n_cls):
            n = int(drawn.counts[c])
            if c in test_unseen:
                cls_parts = ["stage_2_test_unseen"] * n
            else:
                n_test = max(1, round(n * 0.1))
                first = "stage_1_val_unseen" if c in val_unseen else "stage_1_train"
                n_val = 0 if c in val_unseen else max(1, round(n * 0.1))
                cls_parts = (["stage_2_test_seen"] * n_test + ["stage_1_val_seen"] * n_val
                             + [first] * (n - n_test - n_val))
            labels.extend([c] * n)
            parts.extend(code[x] for x in cls_parts)
        labels = np.asarray(labels)
        latent, maps, emb = drawn.latent, drawn.maps, drawn.label_embeddings
        # what made each label part: the demo's text model, filled with the prompt names
        made = {part: text_model_record(seed, p, dims, part) for part in emb}
        features = {modality: self._feature(rng, latent[labels], maps[modality], maps.get(text), p)
                    for modality, text in (("video", "clip"), ("audio", "clap"))}
        names = [classes[c] for c in range(n_cls)]
        lists = {
            "stage_1_train": [names[c] for c in train],
            "stage_1_val_seen": [names[c] for c in train],
            "stage_1_val_unseen": [names[c] for c in val_unseen],
            "stage_2_train": sorted(names[c] for c in np.union1d(train, val_unseen)),
            "stage_2_test_seen": sorted(names[c] for c in np.union1d(train, val_unseen)),
            "stage_2_test_unseen": [names[c] for c in test_unseen],
        }
        return FeatureBundle(
            classes=classes,
            prompt_names=drawn.prompt_names,
            ids=[f"demo_{i:05d}" for i in range(len(labels))],
            labels=labels,
            features=features,
            label_embeddings=emb,
            partition=np.asarray(parts, dtype=np.int8),
            class_splits={"cls_split": lists},
            provenance={"source": f"synthetic(seed={seed})", "format": self.kind,
                        # with the records: a store generated before they were is written again, once
                        "fingerprint": hashlib.sha256(repr((seed, p, dims, made)).encode()).hexdigest(),
                        "label_embeddings": made},
        )

    @staticmethod
    def _feature(rng: np.random.Generator, class_latent: np.ndarray, own_map: np.ndarray,
                 text_map: np.ndarray | None, p: Params) -> np.ndarray:
        """One modality's unit-length features (N, dim): the learnable view through `own_map`,
        the view aligned with the label embeddings through `text_map` (when its width fits),
        and the modality gap."""
        n, latent_dim = class_latent.shape
        # In place where an array is (videos x width): the same numbers, in the same order, as the
        # expressions in the comments, without a new array per operation (a fresh array of the
        # audio's 55 MB costs more in page faults than its arithmetic)

        def view(noise: float, mapping: np.ndarray) -> np.ndarray:
            # (class_latent + noise * N(0, 1)) @ mapping, each row scaled to unit length
            drawn = rng.standard_normal((n, latent_dim))
            drawn *= noise
            drawn += class_latent
            x = drawn @ mapping
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            return x

        x = view(p.noise, own_map)
        if text_map is not None and text_map.shape[1] == own_map.shape[1]:
            # (1 - w) * x + w * aligned, plus the modality gap
            x *= 1 - p.aligned_weight
            aligned = view(p.aligned_noise, text_map)
            aligned *= p.aligned_weight
            x += aligned
            del aligned
            gap = rng.standard_normal(own_map.shape[1])
            x += p.modality_gap * gap / np.linalg.norm(gap)
        jitter = rng.standard_normal(x.shape)  # x + 0.01 * N(0, 1), each row scaled to unit length
        jitter *= 0.01
        x += jitter
        del jitter
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)
