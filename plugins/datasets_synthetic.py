"""The `synthetic` format: the generated demo benchmark (UCF-shaped, learnable, no download)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipclap_cli.api import PARTITIONS, DatasetAdapter, FeatureBundle, KindExample


class SyntheticBenchmark(DatasetAdapter):
    """A generated benchmark shaped like UCF-GZSL (cls_split) where zero-shot transfer is learnable.

    Every class has a latent vector; video and audio features and both label embeddings are
    fixed random linear maps of it plus noise, so a mapping learnt on seen classes transfers.
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
        "Per-video noise relative to the class signal"

    @classmethod
    def example(cls, folder: Path) -> KindExample:
        """Eight small classes at small widths: generated, nothing is written to `folder`."""
        return KindExample({"train_classes": 4, "val_unseen_classes": 2, "test_unseen_classes": 2,
                            "videos_per_class": 6, "dims": {"audio": 12, "video": 10, "clip": 8, "clap": 6}})

    def load_features(self, root: Path | None, **options) -> FeatureBundle:
        p = self.params
        seed = int(options.get("seed", p.seed))
        rng = np.random.default_rng(seed)
        dims = self.entry.dims
        n_cls = p.train_classes + p.val_unseen_classes + p.test_unseen_classes
        latent = rng.standard_normal((n_cls, p.latent_dim))
        maps = {name: rng.standard_normal((p.latent_dim, d)) / np.sqrt(p.latent_dim)
                for name, d in (("video", dims.video), ("audio", dims.audio), *dims.text_parts)}
        classes = [f"class_{i:03d}" for i in range(n_cls)]
        order = rng.permutation(n_cls)
        train, val_unseen, test_unseen = (np.sort(order[: p.train_classes]),
                                          np.sort(order[p.train_classes: p.train_classes + p.val_unseen_classes]),
                                          np.sort(order[p.train_classes + p.val_unseen_classes:]))
        counts = rng.integers(int(p.videos_per_class * 0.7), int(p.videos_per_class * 1.3) + 1, size=n_cls)
        labels, parts = [], []
        code = {name: i for i, name in enumerate(PARTITIONS)}
        for c in range(n_cls):
            n = int(counts[c])
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
        z = latent[labels] + p.noise * rng.standard_normal((len(labels), p.latent_dim))
        video = z @ maps["video"] + 0.1 * rng.standard_normal((len(labels), dims.video))
        video /= np.linalg.norm(video, axis=1, keepdims=True)
        audio = z @ maps["audio"] + 0.1 * rng.standard_normal((len(labels), dims.audio))
        emb = {}
        for name, d in dims.text_parts:
            e = latent @ maps[name] + 0.05 * rng.standard_normal((n_cls, d))
            emb[name] = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
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
            prompt_names=[n.replace("_", " ") for n in classes],
            ids=[f"demo_{i:05d}" for i in range(len(labels))],
            labels=labels,
            features={"video": video.astype(np.float32), "audio": audio.astype(np.float32)},
            label_embeddings=emb,
            partition=np.asarray(parts, dtype=np.int8),
            class_splits={"cls_split": lists},
            provenance={"source": f"synthetic(seed={seed})", "format": self.kind,
                        "fingerprint": hashlib.sha256(repr((seed, p, dims)).encode()).hexdigest()},
        )
