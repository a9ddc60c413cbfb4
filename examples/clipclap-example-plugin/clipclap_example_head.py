"""The example plugin's fusion head (imports torch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipclap_cli import check_ranges
from clipclap_cli.api import FusionHead


class BilinearHead(FusionHead):
    """Linear maps of [video | audio] and of the label embedding into one space; softmax over classes."""

    head_id = "bilinear"

    @dataclass(frozen=True)
    class Params:
        dim_out: int = 32
        "Width of the joint space"

        def __post_init__(self):
            check_ranges(self, sizes=("dim_out",))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        self.x_proj = nn.Linear(dims.video + dims.audio, params.dim_out)
        self.w_proj = nn.Linear(dims.text, params.dim_out)

    def _x(self, audio, video):
        return self.x_proj(torch.cat((video, audio), dim=1))

    def loss(self, batch, class_text):
        ce = F.cross_entropy(self._x(batch.audio, batch.video) @ self.w_proj(class_text).T, batch.target)
        return ce, {"cross_entropy": ce}

    def distances(self, audio, video, class_text):
        return {"both": torch.cdist(self._x(audio, video), self.w_proj(class_text))}
