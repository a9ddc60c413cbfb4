"""`demo-text`: the text model of the generated demo benchmark (the `synthetic` format).

The demo's label embeddings are not made by CLIP or CLAP: the generator draws a latent vector
per class and maps it into each label part's space (`datasets_synthetic.draw_classes`). This
encoder is that text model, so that a demo run can name classes as a real one does (`predict
--classes`): the prompt name of one of the benchmark's classes gives exactly the row the
generator stored; any other text gives a latent drawn from a hash of the text, through the same
map (`label_rows`), so that new names embed too, the same way every time. Text is compared as
CLIP's tokenizer sees it: lowercased, runs of spaces as one.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from clipclap_cli.api import LABEL_PARTS, Encoder, FeatureDims, check_ranges

from .datasets_synthetic import ClassDraw, draw_classes, label_rows

ENCODER_ID = "demo-text"
TEMPLATES = ["{}"]
"The demo's label embeddings are of the bare prompt names: one template, the name itself"


class DemoText(Encoder):
    """The synthetic benchmark's text model: prompts -> label embeddings of one label part."""

    encoder_id = ENCODER_ID
    modality = "text"
    dim = 512
    description = "The demo benchmark's text model (its classes' own label embeddings; any text)"
    contract_params: ClassVar[dict[str, Any]] = {"video_dim": 10, "audio_dim": 12, "clip_dim": 8, "clap_dim": 6}
    "Small widths, as the synthetic format's example"

    @dataclass(frozen=True)
    class Params:
        seed: int = 0
        "The generator's seed"
        train_classes: int = 30
        "The synthetic benchmark's Params, those its classes are drawn with"
        val_unseen_classes: int = 12
        test_unseen_classes: int = 6
        videos_per_class: int = 140
        latent_dim: int = 24
        video_dim: int = 512
        "The dataset's widths (the generator draws a map for each, in this order)"
        audio_dim: int = 1024
        clip_dim: int = 512
        clap_dim: int = 1024
        part: Literal["clip", "clap"] = "clip"
        "The label part this encoder embeds into"

        def __post_init__(self):
            check_ranges(self, sizes=("train_classes", "val_unseen_classes", "test_unseen_classes",
                                      "videos_per_class", "latent_dim", "video_dim", "audio_dim", "clip_dim",
                                      "clap_dim"))

    def __init__(self, params: DemoText.Params | None = None):
        super().__init__(params)
        self.dim = getattr(self.params, f"{self.params.part}_dim")

    def encode_batch(self, items: list[str]) -> np.ndarray:
        """Each prompt's embedding (B, dim), unit rows."""
        return np.stack([self._row(str(text)) for text in items]).astype(np.float32)

    def label_embedding(self, prompts: list[str]) -> np.ndarray:
        """The prompts' embeddings pooled as CLIP's are (SPEC.md: normalise, average, normalise);
        one prompt's is its own row, unchanged, so that a class's prompt name gives back exactly
        the stored label embedding."""
        rows = self.encode_batch(prompts)
        if len(rows) == 1:
            return rows[0]
        mean = rows.astype(np.float64).mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def _row(self, text: str) -> np.ndarray:
        key = _seen_as(text)
        drawn, names = _drawn(self.params)
        if key in names:
            return drawn.label_embeddings[self.params.part][names[key]]
        words = [int(w) for w in np.frombuffer(hashlib.sha256(key.encode()).digest(), dtype=np.uint32)]
        latent = np.random.default_rng(words).standard_normal((1, self.params.latent_dim))  # one per text, all parts
        noise = np.random.default_rng([*words, LABEL_PARTS.index(self.params.part) + 1])
        return label_rows(latent, drawn.maps[self.params.part], noise)[0]


def _seen_as(text: str) -> str:
    """Text as a tokenizer that lowercases sees it: casefolded, runs of whitespace as one space."""
    return " ".join(text.casefold().split())


@functools.cache
def _drawn(p: DemoText.Params) -> tuple[ClassDraw, dict[str, int]]:
    """The benchmark's classes for these params (drawn once per process; no video is drawn),
    and the class of each prompt name as `_seen_as` gives it."""
    dims = FeatureDims(audio=p.audio_dim, video=p.video_dim, text_parts=(("clip", p.clip_dim), ("clap", p.clap_dim)))
    drawn = draw_classes(np.random.default_rng(p.seed), p, dims)
    return drawn, {_seen_as(name): i for i, name in enumerate(drawn.prompt_names)}


def text_model_record(seed: int, p: Any, dims: FeatureDims, part: str) -> dict[str, Any]:
    """What made label part `part` of a synthetic benchmark (seed, its Params `p`, widths `dims`):
    this encoder with the params that give its rows, and the template (the prompt name alone).
    Recorded with the part's array, as `clipclap embed` records its encoder (params as strings)."""
    widths = dict(dims.text_parts)
    if tuple(widths) != LABEL_PARTS:  # the encoder draws the maps of clip then clap
        return {}
    params = {"seed": seed, "train_classes": p.train_classes, "val_unseen_classes": p.val_unseen_classes,
              "test_unseen_classes": p.test_unseen_classes, "videos_per_class": p.videos_per_class,
              "latent_dim": p.latent_dim, "video_dim": dims.video, "audio_dim": dims.audio,
              "clip_dim": widths["clip"], "clap_dim": widths["clap"], "part": part}
    return {"encoder": ENCODER_ID, "params": {k: str(v) for k, v in params.items()}, "templates": list(TEMPLATES)}
