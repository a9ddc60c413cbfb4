"""An example clipclap plugin: one dataset (its format and its entry) and one fusion head.

Installed, it adds dataset `toy` (kind `toy-clusters`) and head `bilinear`:

    clipclap demo --dataset toy --no-train          # generate it into the store
    clipclap split toy --seen 8 --unseen 3 --seed 0 --split drawn
    clipclap train toy --head bilinear --stage all
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipclap_cli import DatasetAdapter, FeatureBundle, KindExample, hookimpl


class ToyClusters(DatasetAdapter):
    """Gaussian clusters around latent class vectors; no protocol partition (draw a split)."""

    kind = "toy-clusters"
    description = "Example plugin: Gaussian clusters, draw a split with `clipclap split --seen/--unseen`"

    @dataclass(frozen=True)
    class Params:
        classes: int = 12
        "Number of classes"
        videos_per_class: int = 40
        "Videos per class"
        seed: int = 0
        "Generator seed"

    @classmethod
    def example(cls, folder):
        """A small instance for the contract kit (`clipclap plugins check`): generated, no files."""
        return KindExample({"classes": 4, "videos_per_class": 5,
                            "dims": {"video": 6, "audio": 7, "clip": 5, "clap": 4}})

    def load_features(self, root, **options):
        p = self.params
        seed = int(options.get("seed", p.seed))
        rng = np.random.default_rng(seed)
        dims = self.entry.dims
        latent = rng.standard_normal((p.classes, 8))
        labels = np.repeat(np.arange(p.classes), p.videos_per_class)
        z = latent[labels] + 0.5 * rng.standard_normal((len(labels), 8))

        def project(x, d):
            return (x @ rng.standard_normal((8, d))).astype(np.float32)

        video = project(z, dims.video)
        video /= np.linalg.norm(video, axis=1, keepdims=True)
        emb = {}
        for name, d in dims.text_parts:
            e = project(latent, d)
            emb[name] = e / np.linalg.norm(e, axis=1, keepdims=True)
        return FeatureBundle(
            classes=[f"toy_{i}" for i in range(p.classes)],
            prompt_names=[f"toy {i}" for i in range(p.classes)],
            ids=[f"toy_{i:04d}" for i in range(len(labels))],
            labels=labels,
            features={"video": video, "audio": project(z, dims.audio)},
            label_embeddings=emb,
            partition=np.full(len(labels), -1, dtype=np.int8),
            provenance={"source": f"toy-clusters(seed={seed})", "format": self.kind,
                        "fingerprint": f"toy-{seed}-{p.classes}-{p.videos_per_class}"},
        )


@hookimpl
def register_dataset_kinds(register):
    register(ToyClusters)


@hookimpl
def register_dataset_entries(register):
    register("toy", {
        "display_name": "Toy clusters (example plugin)",
        "kind": "toy-clusters",
        "split": "drawn",
        "dims": {"video": 32, "audio": 48, "clip": 16, "clap": 24},
        "train": {"lr": 1e-3, "epochs": 3, "batch_size": 32, "batches_per_epoch": 20},
    })


@hookimpl
def register_heads(register):
    from clipclap_example_head import BilinearHead  # imports torch: only when heads are listed or used

    register(BilinearHead, aliases=("bilinear-example",))
