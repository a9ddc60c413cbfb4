"""The fusion-head contract (imports torch; loaded only when a head is used).

A head owns its modules, its loss and its prediction rule. The protocol (sampling, the two
stages, the bias grid, model selection) belongs to the trainer and is the same for every head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice, pairwise
from typing import Any, ClassVar

import torch
from torch import nn

from clipclap_cli.api import LABEL_PARTS, FeatureDims

#: Distance modes of the reference evaluation. Single-query heads answer only "both".
MODES = ("audio", "video", "both")


@dataclass
class Batch:
    """A training batch. `target` indexes rows of the class-text matrix passed alongside, and
    `text` is those rows (`class_text[target]`): heads may rely on it (ClipClap computes W_enc
    once per class and gathers the batch's rows).

    The negative fields are filled only for heads with `needs_negatives = True`: a random other
    class of the training split and a random video of it (BASELINES.md 2.2).
    """

    audio: torch.Tensor
    video: torch.Tensor
    text: torch.Tensor
    target: torch.Tensor
    audio_neg: torch.Tensor | None = None
    video_neg: torch.Tensor | None = None
    text_neg: torch.Tensor | None = None
    target_neg: torch.Tensor | None = None


class FusionHead(nn.Module):
    """Base class of fusion heads.

    Subclasses set `head_id`, declare a frozen `Params` dataclass and implement `loss` and
    `distances`. `replay_forward` reproduces the reference's extra train-mode forward after each
    optimiser step (it moves batch-norm statistics and consumes dropout randomness).
    """

    head_id: ClassVar[str]
    Params: ClassVar[type]
    needs_negatives: ClassVar[bool] = False
    train_defaults: ClassVar[Mapping[str, Any]] = {}
    """Training settings this head trains with by default (some of `protocol.LAYERED_SETTINGS`,
    e.g. the AVCA-GZSL baselines' lr 1e-3 and 50 epochs): over the dataset's, under the
    dataset's `head_train.<head>` and the command line. Checked when the head is registered."""
    training_free: ClassVar[bool] = False
    """Nothing to learn (the `zeroshot` head): the trainer takes no optimiser step and never
    calls `loss`; each stage is one epoch, the validation pass that calibrates the bias."""
    label_space: ClassVar[bool] = False
    """The head compares video features with the CLIP label embeddings and audio features with
    the CLAP ones as they are, so video must be as wide as `clip` and audio as `clap`. A run on
    other widths is refused when the head is built; the contract kit checks it on such widths."""

    def __init__(self, dims: FeatureDims, params: Any):
        super().__init__()
        self.dims, self.params = dims, params

    @classmethod
    def label_parts(cls, params: Any) -> tuple[str, ...]:
        """The label embeddings this head reads with `params` (some of LABEL_PARTS, in its order).
        A run needs only these in the store, so a head that reads CLIP labels alone trains on a
        dataset without CLAP ones. `class_text` holds every part the store had when the run
        started, side by side (`dims.text_slice(*parts)` finds them). Default: all, [CLIP | CLAP]."""
        return LABEL_PARTS

    def loss(self, batch: Batch, class_text: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss for a batch; `class_text` holds the label embeddings of every training class."""
        raise NotImplementedError

    def distances(self, audio: torch.Tensor, video: torch.Tensor, class_text: torch.Tensor) -> dict[str, torch.Tensor]:
        """Euclidean distances (N, C) between samples and classes, per mode ("both" at least)."""
        raise NotImplementedError

    def replay_forward(self, batch: Batch) -> None:
        """The reference's extra train-mode forward after each step; default: nothing."""

    @classmethod
    def stacked(cls, heads: list[FusionHead], params: Any, generators: list[torch.Generator]) -> Any:
        """The K `heads` (this class, the same parameters, one run each) as one stacked model, so
        that `train --seeds K` trains them together (clipclap_cli/train/stacking.py), or None
        (the default): the runs then train one after the other. A stacked model has
        `loss(batch, class_text)` -> (total, parts) with one value per run (shape (K,)) on a
        `Batch` whose tensors are (batch, K, ...), `replay_forward(batch, class_text)`, and `write_back()`,
        which gives each head the batch-norm statistics the stack moved. `params`
        (`StackedParameters`) holds the heads' parameters as (K, ...) leaves; run k's dropout
        masks come from `generators[k]`."""
        return None

    def param_groups(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (AVCA leaves one out, as the reference does)."""
        return list(self.parameters())


class Dropout(nn.Dropout):
    """`nn.Dropout` with a cheaper mask on the CPU; the same distribution as the reference's.

    Each element is kept with probability 1 - p (a uniform from torch's generator, the one
    `nn.Dropout` draws from, at its 24-bit resolution) and scaled by 1 / (1 - p). torch's CPU
    `bernoulli_` costs twice what `torch.rand` plus two in-place ops do, and dropout masks were
    ~20 % of a ClipClap training step. Elsewhere (CUDA, other dtypes than float32) it is
    `nn.Dropout` itself.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.p == 0.0 or self.p >= 1.0 or x.device.type != "cpu"
                or x.dtype != torch.float32):
            return super().forward(x)
        keep = torch.rand(x.shape, dtype=x.dtype).add_(1.0 - self.p).floor_()  # 1 with probability 1 - p
        return x * keep.mul_(1.0 / (1.0 - self.p))


def fbrd(d_in: int, d_out: int, dropout: float, momentum: float = 0.1) -> list[nn.Module]:
    """Linear -> BatchNorm1d -> ReLU -> Dropout, the block every AV-GZSL head is built from."""
    return [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out, momentum=momentum), nn.ReLU(), Dropout(dropout)]


class Block(nn.Module):
    """A stack of FBRD blocks under the attribute name `fc` (state-dict names `X.fc.0.weight`, ...)."""

    def __init__(self, sizes: list[int], dropout: float, momentum: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        for d_in, d_out in pairwise(sizes):
            layers += fbrd(d_in, d_out, dropout, momentum)
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """The first linear layer alone, so that inputs sharing it can share one matrix multiply."""
        return self.fc[0](x)

    def after_linear(self, h: torch.Tensor) -> torch.Tensor:
        """Every layer after the first linear one (`forward(x) == after_linear(linear(x))`)."""
        for layer in islice(self.fc, 1, None):
            h = layer(h)
        return h
