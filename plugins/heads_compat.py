"""Compatibility-function baselines on early-fused [video | audio]: DEVISE, ALE, SJE and APN.

BASELINES.md 4.1-4.2. Trained with a dot-product compatibility against the raw label
embeddings, tested with the Euclidean distance to them (quirk 10, kept: it shapes the published
numbers). Training defaults (BASELINES.md 6.1): Adam lr 1e-3 without weight decay, batches of
256, 500 batches per epoch, 50 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from clipclap_cli.api import Batch, Dropout, FusionHead, check_ranges

BASELINE_TRAINING = {"lr": 1e-3, "batch_size": 256, "batches_per_epoch": 500, "epochs": 50, "weight_decay": 0.0}


class _EarlyFusion(FusionHead):
    """x = [v ; a], L2-normalised jointly when `norm_inputs` (the cls-feature setting)."""

    train_defaults = BASELINE_TRAINING

    def _x(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        x = torch.cat((video, audio), dim=1)
        return F.normalize(x) if self.params.norm_inputs else x


class DeviseHead(_EarlyFusion):
    """DEVISE (hinge ranking, summed over classes): s = (M x)ᵀ w_c with one bias-free map M.

    Dropout acts on x and on the class matrix during training. Margin 0.1 (hard-coded in the
    original). Test: Euclidean distance between M x and the raw label embeddings.
    """

    head_id = "devise"
    reduction: ClassVar[str] = "sum"

    @dataclass(frozen=True)
    class Params:
        dropout: float = 0.2
        "dropout_baselines (0.2 for UCF and ActivityNet, 0.0 for VGGSound)"
        norm_inputs: bool = True
        "L2-normalise [video | audio] jointly (the original's --norm_inputs for cls features)"
        margin: float = 0.1
        "Hinge margin"

        def __post_init__(self):
            check_ranges(self, rates=("dropout",))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        self.drop = Dropout(params.dropout)
        self.M = nn.Linear(dims.video + dims.audio, dims.text, bias=False)

    def hinge(self, batch: Batch, class_text: torch.Tensor) -> torch.Tensor:
        """h[n, c] = max(0, margin + s[n, c] - s[n, y_n]), zero at c = y_n."""
        scores = self.M(self.drop(self._x(batch.audio, batch.video))) @ self.drop(class_text).T
        true = scores.gather(1, batch.target[:, None])
        h = (self.params.margin + scores - true).clamp(min=0)
        return h.scatter(1, batch.target[:, None], 0.0)

    def loss(self, batch, class_text):
        h = self.hinge(batch, class_text)
        if self.reduction == "sum":
            total = h.sum(dim=1).mean()
        elif self.reduction == "weighted":
            total = (_rank_weight((h > 0).sum(dim=1)) * h.sum(dim=1)).mean()
        else:  # "max": SJE's most violating class
            total = h.max(dim=1).values.mean()
        return total, {"hinge": total}

    def distances(self, audio, video, class_text):
        return {"both": torch.cdist(self.M(self._x(audio, video)), class_text)}


def _rank_weight(r: torch.Tensor) -> torch.Tensor:
    """ALE's H(r)/r with H the harmonic number (0 when r = 0)."""
    harmonic = torch.cumsum(1.0 / torch.arange(1, int(r.max()) + 2, dtype=torch.float32, device=r.device), 0)
    h = torch.where(r > 0, harmonic[(r - 1).clamp(min=0)], torch.zeros((), device=r.device))
    return h / r.clamp(min=1)


class AleHead(DeviseHead):
    """ALE: DEVISE's hinge terms weighted by the rank normaliser H(r_n)/r_n (r_n violating classes)."""

    head_id = "ale"
    reduction = "weighted"


class SjeHead(DeviseHead):
    """SJE: only the most violating class counts (max over the hinge terms)."""

    head_id = "sje"
    reduction = "max"


class ApnHead(_EarlyFusion):
    """APN, the degenerate 1x1 version: two bias-free maps of x to the label space.

    g = P_final x, g' = P_l4 x, p = softmax(g Wᵀ); loss CE(p, y) + MSE(g, w_y) + the same for g'.
    Quirk 9: the original feeds the *softmaxed* p to CrossEntropyLoss (a double softmax). It
    shapes the published numbers, so `fixed=false` (the default) keeps it; `fixed=true` uses the
    logits. Maps initialised 2e-4 * U[0, 1); no dropout. Test: Euclidean distance of g to w_c.
    """

    head_id = "apn"

    @dataclass(frozen=True)
    class Params:
        norm_inputs: bool = True
        "L2-normalise [video | audio] jointly (the original's --norm_inputs for cls features)"
        fixed: bool = False
        "Cross-entropy on logits instead of the original's double softmax"

    def __init__(self, dims, params):
        super().__init__(dims, params)
        d_in = dims.video + dims.audio
        self.P_final = nn.Parameter(2e-4 * torch.rand(dims.text, d_in))
        self.P_l4 = nn.Parameter(2e-4 * torch.rand(dims.text, d_in))

    def loss(self, batch, class_text):
        x = self._x(batch.audio, batch.video)
        total, parts = 0.0, {}
        for name, P in (("final", self.P_final), ("l4", self.P_l4)):
            g = x @ P.T
            logits = g @ class_text.T
            ce = F.cross_entropy(logits if self.params.fixed else logits.softmax(dim=1), batch.target)
            mse = F.mse_loss(g, batch.text)
            parts[f"ce_{name}"], parts[f"mse_{name}"] = ce, mse
            total = total + ce + mse
        return total, parts

    def distances(self, audio, video, class_text):
        return {"both": torch.cdist(self._x(audio, video) @ self.P_final.T, class_text)}
