"""The ClipClap fusion head (SPEC.md "The ClipClap model"); imports torch, so loaded lazily."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from clipclap_cli.api import LABEL_PARTS, Batch, Block, FusionHead, StackedBlock, check_ranges, per_run_mse


class ClipClapHead(FusionHead):
    """ClipClap-GZSL: encoders for [video | audio] and label embeddings into a 64-d space.

    Modules (state-dict names of the published checkpoints): O_enc, W_enc B(in->512);
    O_proj B2(512->512->64); D_o B2(64->512->512); W_proj B(512->64); D_w B(64->512).
    Loss = CE(theta_o . T_train^T) + MSE(theta_o, theta_w) + MSE(w_hat, rho_o) + MSE(w_hat, rho_w),
    with w_hat not detached. Prediction: Euclidean distance between theta_o and W_proj(W_enc(w_c)).
    """

    head_id = "clipclap"

    @dataclass(frozen=True)
    class Params:
        modality: Literal["both", "audio", "video"] = "both"
        "Input modalities: both = concat(video, audio); audio -> CLAP labels; video -> CLIP labels"
        labels: Literal["both", "clip", "clap"] = "both"
        "Label embedding with both modalities: [CLIP | CLAP], CLIP only or CLAP only"
        hidden: int = 512
        "Width of the encoders and decoders"
        dim_out: int = 64
        "Width of the shared embedding space"
        dropout: float = 0.1
        "Dropout of every block"

        def __post_init__(self):
            check_ranges(self, sizes=("hidden", "dim_out"), rates=("dropout",))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        p = params
        in_dim = {"both": dims.video + dims.audio, "audio": dims.audio, "video": dims.video}[p.modality]
        self._label_slice = dims.text_slice(*self.label_parts(p))
        w_dim = self._label_slice.stop - self._label_slice.start
        self.O_enc = Block([in_dim, p.hidden], p.dropout)
        self.W_enc = Block([w_dim, p.hidden], p.dropout)
        self.O_proj = Block([p.hidden, p.hidden, p.dim_out], p.dropout)
        self.D_o = Block([p.dim_out, p.hidden, p.hidden], p.dropout)
        self.W_proj = Block([p.hidden, p.dim_out], p.dropout)
        self.D_w = Block([p.dim_out, p.hidden], p.dropout)

    @classmethod
    def label_parts(cls, params) -> tuple[str, ...]:
        # one modality reads the label embedding of its own encoder (the paper's ablation)
        part = {"audio": "clap", "video": "clip"}.get(params.modality, params.labels)
        return LABEL_PARTS if part == "both" else (part,)

    def _inputs(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        if self.params.modality == "audio":
            return audio
        if self.params.modality == "video":
            return video
        return torch.cat((video, audio), dim=1)

    def class_embeddings(self, class_text: torch.Tensor) -> torch.Tensor:
        return self.W_proj(self.W_enc(class_text[:, self._label_slice]))

    def loss(self, batch: Batch, class_text: torch.Tensor):
        # A batch's label embeddings are rows of `class_text` (its 64 rows repeat the training
        # classes), so W_enc's linear layer runs once over the training classes and the batch
        # takes its rows from that result: the numbers of the reference's two W_enc calls, with
        # a third of their multiply-adds on UCF (30 rows instead of 64 + 30). Batch norm, ReLU
        # and dropout then run on each part separately and in the reference's order (the
        # batch's in (1), the classes' in (2)), so each part is normalised by its own statistics
        # as in the reference.
        w_linear = self.W_enc.linear(class_text[:, self._label_slice])
        # (1) the batch's forward, in the reference's module order
        o = self.O_enc(self._inputs(batch.audio, batch.video))
        # the gather as a one-hot product: its gradient (the repeated rows' sum) is then a matrix
        # multiply, deterministic on CUDA too, where index_select's backward adds atomically
        rows = F.one_hot(batch.target, len(class_text)).to(w_linear.dtype)
        w_hat = self.W_enc.after_linear(rows @ w_linear)
        theta_o = self.O_proj(o)
        rho_o = self.D_o(theta_o)
        theta_w = self.W_proj(w_hat)
        rho_w = self.D_w(theta_w)
        # (2) the cross-entropy's class branch over every training class
        logits = theta_o @ self.W_proj(self.W_enc.after_linear(w_linear)).T
        ce = F.cross_entropy(logits, batch.target)
        reg = F.mse_loss(theta_o, theta_w)
        rec = F.mse_loss(w_hat, rho_o) + F.mse_loss(w_hat, rho_w)
        total = ce + reg + rec
        return total, {"cross_entropy": ce, "loss_reg": reg, "loss_cmd_rec": rec}

    def replay_forward(self, batch: Batch) -> None:
        # (4) the reference's get_embeddings(): O_enc, W_enc, O_proj, W_proj, outputs discarded;
        # W_enc's linear layer again runs once per distinct class of the batch (see `loss`)
        with torch.no_grad():
            o = self.O_enc(self._inputs(batch.audio, batch.video))
            first_rows, distinct = first_row_of_each_class(batch.target)
            w_linear = self.W_enc.linear(batch.text[first_rows][:, self._label_slice])
            w_hat = self.W_enc.after_linear(w_linear.index_select(0, distinct))
            self.O_proj(o)
            self.W_proj(w_hat)

    @classmethod
    def stacked(cls, heads, params, generators):
        return StackedClipClap(heads, params, generators)

    def embed_samples(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.O_proj(self.O_enc(self._inputs(audio, video)))

    def distances(self, audio, video, class_text):
        return {"both": torch.cdist(self.embed_samples(audio, video), self.class_embeddings(class_text))}


def first_row_of_each_class(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a batch's class positions: the first row of each distinct class (ascending class
    order), and for every row the index of its class among them."""
    classes, distinct = torch.unique(target, return_inverse=True)
    rows = torch.arange(len(target), device=target.device)
    first = torch.full((len(classes),), len(target), dtype=rows.dtype, device=target.device)
    return first.scatter_reduce_(0, distinct, rows, "amin"), distinct


class StackedClipClap:
    """K ClipClap heads trained as one (`FusionHead.stacked`): the loss and replay forward of
    `ClipClapHead`, step for step, on (batch, K, width) activations. Each run draws the dropout
    masks its head draws alone, in the same order; the replay forward's label branch runs over
    the batch's rows rather than once per distinct class (the same values, up to rounding)."""

    BLOCKS = ("O_enc", "W_enc", "O_proj", "D_o", "W_proj", "D_w")

    def __init__(self, heads, params, generators):
        self.head = heads[0]
        self.runs = len(heads)
        for name in self.BLOCKS:
            setattr(self, name, StackedBlock(name, [getattr(h, name) for h in heads], params, generators))

    def _inputs(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        modality = self.head.params.modality
        return audio if modality == "audio" else video if modality == "video" else torch.cat((video, audio), dim=-1)

    def loss(self, batch: Batch, class_text: torch.Tensor):
        k, label_slice = self.runs, self.head._label_slice
        text = class_text[:, label_slice]
        w_linear = self.W_enc.linear(text.unsqueeze(1).expand(-1, k, -1))  # (classes, K, hidden)
        o = self.O_enc(self._inputs(batch.audio, batch.video))
        rows = F.one_hot(batch.target, len(class_text)).to(w_linear.dtype)  # (batch, K, classes)
        w_hat = self.W_enc.after_linear(torch.bmm(rows.transpose(0, 1), w_linear.transpose(0, 1)).transpose(0, 1))
        theta_o = self.O_proj(o)
        rho_o = self.D_o(theta_o)
        theta_w = self.W_proj(w_hat)
        rho_w = self.D_w(theta_w)
        classes = self.W_proj(self.W_enc.after_linear(w_linear))  # (classes, K, dim_out)
        logits = torch.bmm(theta_o.transpose(0, 1), classes.permute(1, 2, 0))  # (K, batch, classes)
        b = logits.shape[1]
        ce = F.cross_entropy(logits.reshape(k * b, -1), batch.target.T.reshape(-1), reduction="none").view(k, b).mean(1)
        reg = per_run_mse(theta_o, theta_w)
        rec = per_run_mse(w_hat, rho_o) + per_run_mse(w_hat, rho_w)
        total = ce + reg + rec
        return total, {"cross_entropy": ce, "loss_reg": reg, "loss_cmd_rec": rec}

    def replay_forward(self, batch: Batch, class_text: torch.Tensor) -> None:
        # W_enc's linear layer runs once per training class, or per batch row where the batch
        # has fewer rows than there are classes, and the batch takes its rows from the result:
        # as alone (once per distinct class of the batch), up to rounding
        with torch.no_grad():
            o = self.O_enc(self._inputs(batch.audio, batch.video))
            if len(class_text) <= len(batch.target):
                text = class_text[:, self.head._label_slice].unsqueeze(1).expand(-1, self.runs, -1)
                w_linear = self.W_enc.linear(text)
                rows = batch.target.unsqueeze(-1).expand(-1, -1, w_linear.shape[-1])
                w_hat = self.W_enc.after_linear(w_linear.gather(0, rows))
            else:
                w_hat = self.W_enc(batch.text[..., self.head._label_slice])
            self.O_proj(o)
            self.W_proj(w_hat)

    def write_back(self) -> None:
        for name in self.BLOCKS:
            getattr(self, name).write_back()
