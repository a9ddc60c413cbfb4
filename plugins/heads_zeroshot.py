"""The training-free floor: CLIP's and CLAP's own zero-shot classifiers, fused.

CLIP and CLAP are zero-shot models. A video's CLIP visual feature is compared with the CLIP
text embedding of each class, its CLAP audio feature with the CLAP text embedding; the two
cosine similarities are averaged (weight `audio_weight` on audio). Nothing is learnt, so the
head has no parameters; the bias of calibrated stacking is still chosen on validation, as for
every head, which is what makes it a GZSL result and not only a ZSL one.

This needs the features in the label embeddings' space, and for the released features and for
`clipclap extract` they are (docs/heads.md "zeroshot"): the CLIP video features are
`encode_image` (after the visual projection) and the CLIP label embeddings `encode_text` (after
the text projection); the CLAP audio features are WavCaps' `encode_audio` (after `audio_proj`)
and the CLAP label embeddings its `encode_text` (after `text_proj`). All are L2-normalised;
the head normalises again, so unnormalised features of the same space work too.

Distances: `scale * (1 - cos)`, i.e. `scale / 2` times the squared Euclidean distance of the
unit vectors. `scale` (CLIP's logit scale, 100) changes no argmin; it sets how far the
protocol's bias grid (0 to 5 in steps of 1/15) reaches, since cosines of one video with
different classes differ by hundredths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from clipclap_cli.api import FusionHead


class ZeroshotHead(FusionHead):
    """Cosine similarity of each modality with its own encoder's label embedding, averaged."""

    head_id = "zeroshot"
    training_free = True
    label_space = True
    train_defaults: ClassVar[dict] = {"epochs": 1}

    @dataclass(frozen=True)
    class Params:
        audio_weight: float = 0.5
        "Weight of the audio (CLAP) similarity in the fused one; video (CLIP) gets 1 - it"
        scale: float = 100.0
        "Distances are scale * (1 - cosine): sets how far the bias grid reaches (CLIP's logit scale)"

        def __post_init__(self):
            if not 0 <= self.audio_weight <= 1:
                raise ValueError(f"parameter audio_weight={self.audio_weight!r}: expected 0 <= audio_weight <= 1")
            if not self.scale > 0:
                raise ValueError(f"parameter scale={self.scale!r}: expected a positive number")

    @classmethod
    def label_parts(cls, params) -> tuple[str, ...]:
        """Only the label embeddings a weight above zero reads: CLIP alone at audio_weight=0."""
        return tuple(part for part, weight in (("clip", 1 - params.audio_weight), ("clap", params.audio_weight))
                     if weight > 0)

    def similarities(self, audio: torch.Tensor, video: torch.Tensor,
                     class_text: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cosine similarities (N, C) per modality whose label embeddings `class_text` holds."""
        parts = dict(self.dims.text_parts)
        sims = {}
        for modality, features, part in (("video", video, "clip"), ("audio", audio, "clap")):
            if part in parts:
                labels = class_text[:, self.dims.text_slice(part)]
                sims[modality] = F.normalize(features, dim=1) @ F.normalize(labels, dim=1).T
        return sims

    def distances(self, audio, video, class_text):
        sims = self.similarities(audio, video, class_text)
        w = self.params.audio_weight
        if len(sims) == 2:
            both = (1 - w) * sims["video"] + w * sims["audio"]
        else:  # the one the weights read (label_parts)
            [both] = sims.values()
        return {mode: self.params.scale * (1 - s) for mode, s in (*sims.items(), ("both", both))}

    def loss(self, batch, class_text):
        raise NotImplementedError("the zeroshot head is training-free: the trainer never asks for its loss")
