"""HSP-MoE: hyperspherical semantic preservation with audio-visual MoE routing, on ClipClap.

Read from XPX-LQL/HSP-MoE-AVGZSL (src/clipclap_model.py, src/utils.py, scripts/, README) and
written anew; docs/heads.md "HSP-MoE" lists where clipclap departs from that code and why.
The ClipClap model (O_enc, W_enc, O_proj, D_o, W_proj, D_w, same widths and state-dict names)
with five additions, each a parameter, so the README's ablation table is a sweep of `-p`:

- hypersphere: sample and class embeddings are L2-normalised; the cross-entropy's logits are
  their cosines over `temperature`; prediction is the distance between unit vectors.
- DP (`dp_weight`): KL from the foundation's class distribution, softmax(cos([v|a], [w_clip|w_clap])
  / T), to the student's, softmax(cos(theta_o, theta_w) / T), times T^2 (T = `distill_temperature`).
- RP (`rp_weight`): MSE between the off-diagonal cosine matrices of the batch's embeddings and of
  its raw [v|a] features.
- HUP (`hup_weight`): log-mean-exp of -t * squared distances between the batch's embeddings of
  different classes, shifted by 4t and clamped at 0 (`uniformity`), or its excess over the raw
  features' (`preserve`).
- AV-MoE (`moe`): a router over three experts (video+audio, video, audio) whose mixed direction
  is blended into the sample direction with weight `moe_weight` (hypersphere only, as theirs).
- FAR (`far`): at evaluation, distance = w * adapted + (1 - w) * s * raw, raw being the distance
  between unit [v|a] and unit [w_clip|w_clap], s rescaling it to the adapted distances' mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from clipclap_cli.api import LABEL_PARTS, Batch, Block, Dropout, FusionHead, check_ranges

from .clipclap_head import first_row_of_each_class


def _expert(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LayerNorm(hidden), nn.GELU(), Dropout(dropout),
                         nn.Linear(hidden, d_out))


class AudioVisualRouter(nn.Module):
    """The AV-MoE (their `HypersphericalConsensusRouting`, same state-dict names): router inputs
    are unit projections of video and audio; experts see the raw features."""

    def __init__(self, video: int, audio: int, dim: int, dropout: float):
        super().__init__()
        hidden = max(2 * dim, 128)
        self.video_router_proj = nn.Linear(video, dim)
        self.audio_router_proj = nn.Linear(audio, dim)
        self.multimodal_experts = nn.ModuleList([_expert(video + audio, hidden, dim, dropout)])
        self.singlemodal_experts = nn.ModuleList([_expert(video, hidden, dim, dropout),
                                                  _expert(audio, hidden, dim, dropout)])
        self.router = nn.Sequential(nn.Linear(2 * dim, 128), nn.ReLU(), Dropout(dropout), nn.Linear(128, 32),
                                    nn.ReLU(), nn.Linear(32, 3))

    def forward(self, direction, video, audio, weight: float, temperature: float):
        """(refined direction, the experts' mixed direction, routing weights)."""
        descriptors = torch.cat((F.normalize(self.video_router_proj(video), dim=1),
                                 F.normalize(self.audio_router_proj(audio), dim=1)), dim=1)
        routing = F.softmax(self.router(descriptors) / max(temperature, 1e-6), dim=1)
        experts = torch.stack([F.normalize(self.multimodal_experts[0](torch.cat((video, audio), dim=1)), dim=1),
                               F.normalize(self.singlemodal_experts[0](video), dim=1),
                               F.normalize(self.singlemodal_experts[1](audio), dim=1)], dim=1)
        mixed = F.normalize((routing.unsqueeze(-1) * experts).sum(1), dim=1)
        return F.normalize((1.0 - weight) * F.normalize(direction, dim=1) + weight * mixed, dim=1), mixed, routing


class HspMoeHead(FusionHead):
    """HSP-MoE (XPX-LQL/HSP-MoE-AVGZSL): ClipClap + hypersphere, DP, RP, HUP, FAR and AV-MoE.

    Defaults are their README's full model (section 6.2). Loss = CE(cos / temperature) + MSE(theta_o,
    theta_w) + rec + dp_weight * DP + rp_weight * RP + hup_weight * HUP. All off
    (hypersphere=false, the three weights 0, far=false, moe=false) it is the clipclap head.
    """

    head_id = "hspmoe"
    label_space = True  # DP's teacher and FAR's raw branch compare [v|a] with [w_clip|w_clap] as they are

    @dataclass(frozen=True)
    class Params:
        hypersphere: bool = True
        "Unit-length embeddings, cosine logits over `temperature`, distances between unit vectors"
        temperature: float = 0.1
        "Logit temperature of the cross-entropy on the hypersphere"
        dp_weight: float = 0.001
        "Distribution preservation: weight of the KL to the foundation's class distribution (0: off)"
        rp_weight: float = 0.0002
        "Relation preservation: weight of the MSE to the raw features' cosine matrix (0: off)"
        distill_temperature: float = 2.0
        "Temperature of DP's two softmaxes"
        hup_weight: float = 0.0002
        "Hyperspherical uniformity preservation: weight (0: off)"
        hup_mode: Literal["uniformity", "preserve"] = "uniformity"
        "HUP: the embeddings' own uniformity, or its excess over the raw features'"
        hup_temperature: float = 2.0
        "HUP's scale t in exp(-t * squared distance)"
        hup_margin: float = 0.0
        "HUP preserve: allowed excess over the raw features' uniformity"
        hup_cross_class: bool = True
        "HUP over pairs of different classes only"
        far: bool = True
        "Foundation-anchored fusion of the adapted and raw distances at evaluation"
        far_weight: float = 0.5
        "FAR: weight of the adapted distance (1: the adapted branch alone)"
        far_scale: Literal["sample", "set", "none"] = "sample"
        "FAR: rescale raw distances to the adapted ones' mean per sample, over the evaluated set (theirs), or not"
        moe: bool = True
        "Audio-visual mixture-of-experts routing of the sample direction (with hypersphere)"
        moe_weight: float = 0.5
        "AV-MoE: weight of the experts' direction in the refined one"
        moe_temperature: float = 1.0
        "AV-MoE: router softmax temperature"
        moe_dropout: float = 0.1
        "AV-MoE: dropout of the experts and the router"
        hidden: int = 512
        "Width of the encoders and decoders"
        dim_out: int = 64
        "Width of the shared embedding space"
        dropout: float = 0.1
        "Dropout of every ClipClap block"

        def __post_init__(self):
            check_ranges(self, sizes=("hidden", "dim_out"), rates=("dropout", "moe_dropout"))
            for name in ("temperature", "distill_temperature", "hup_temperature", "moe_temperature"):
                if not getattr(self, name) > 0:
                    raise ValueError(f"parameter {name}={getattr(self, name)!r}: expected a positive number")
            for name in ("dp_weight", "rp_weight", "hup_weight", "hup_margin"):
                if not getattr(self, name) >= 0:
                    raise ValueError(f"parameter {name}={getattr(self, name)!r}: expected at least 0")
            for name in ("far_weight", "moe_weight"):
                if not 0 <= getattr(self, name) <= 1:
                    raise ValueError(f"parameter {name}={getattr(self, name)!r}: expected 0 <= {name} <= 1")

    def __init__(self, dims, params):
        super().__init__(dims, params)
        p = params
        self._labels = dims.text_slice(*LABEL_PARTS)  # [w_clip | w_clap]
        self.O_enc = Block([dims.video + dims.audio, p.hidden], p.dropout)
        self.W_enc = Block([self._labels.stop - self._labels.start, p.hidden], p.dropout)
        self.O_proj = Block([p.hidden, p.hidden, p.dim_out], p.dropout)
        self.D_o = Block([p.dim_out, p.hidden, p.hidden], p.dropout)
        self.W_proj = Block([p.hidden, p.dim_out], p.dropout)
        self.D_w = Block([p.dim_out, p.hidden], p.dropout)
        if p.moe:
            self.semantic_consensus = AudioVisualRouter(dims.video, dims.audio, p.dim_out, p.moe_dropout)

    # ------------------------------------------------------------------ embeddings

    @staticmethod
    def foundation(audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return torch.cat((video, audio), dim=1)

    def sample_direction(self, theta_o, audio, video) -> torch.Tensor:
        """theta_o on the hypersphere, refined by the AV-MoE where on; theta_o itself off it."""
        p = self.params
        if not p.hypersphere:
            return theta_o
        if p.moe:
            return self.semantic_consensus(theta_o, video, audio, p.moe_weight, p.moe_temperature)[0]
        return F.normalize(theta_o, dim=1)

    def class_direction(self, theta_w: torch.Tensor) -> torch.Tensor:
        return F.normalize(theta_w, dim=1) if self.params.hypersphere else theta_w

    def embed_samples(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.sample_direction(self.O_proj(self.O_enc(self.foundation(audio, video))), audio, video)

    def class_embeddings(self, class_text: torch.Tensor) -> torch.Tensor:
        return self.class_direction(self.W_proj(self.W_enc(class_text[:, self._labels])))

    # ------------------------------------------------------------------ losses

    def distribution_loss(self, student, classes, raw, raw_classes) -> torch.Tensor:
        t = self.params.distill_temperature
        logits = F.normalize(student, dim=1) @ F.normalize(classes, dim=1).T / t
        teacher = F.softmax(F.normalize(raw.detach(), dim=1) @ F.normalize(raw_classes.detach(), dim=1).T / t, dim=1)
        return F.kl_div(F.log_softmax(logits, dim=1), teacher, reduction="batchmean") * t * t

    @staticmethod
    def relation_loss(student, raw) -> torch.Tensor:
        n = len(student)
        if n < 2:
            return student.new_zeros(())
        s, r = F.normalize(student, dim=1), F.normalize(raw.detach(), dim=1)
        off = ~torch.eye(n, dtype=torch.bool, device=student.device)
        return F.mse_loss((s @ s.T)[off], (r @ r.T)[off])

    def _log_uniformity(self, x, pairs):
        x = F.normalize(x, dim=1)
        sq = (2.0 - 2.0 * (x @ x.T)).clamp_min(0.0)[pairs]
        if sq.numel() == 0:
            return None
        return torch.logsumexp(-self.params.hup_temperature * sq, dim=0) - math.log(sq.numel())

    def hup_loss(self, student, raw, target) -> torch.Tensor:
        p, n = self.params, len(student)
        if n < 2:
            return student.new_zeros(())
        pairs = ~torch.eye(n, dtype=torch.bool, device=student.device)
        if p.hup_cross_class:
            pairs &= target.view(-1, 1) != target.view(1, -1)
        own = self._log_uniformity(student, pairs)
        if own is None:
            return student.new_zeros(())
        if p.hup_mode == "uniformity":  # shifted by the largest squared distance (4) to be >= 0
            return (own + 4.0 * p.hup_temperature).clamp_min(0.0)
        with torch.no_grad():
            teacher = self._log_uniformity(raw, pairs)
        return F.relu(own - teacher - p.hup_margin)

    def loss(self, batch: Batch, class_text: torch.Tensor):
        p, class_text = self.params, class_text[:, self._labels]
        # W_enc's linear layer once over the training classes, the batch's rows gathered from it,
        # and batch norm run on each part separately, as the clipclap head does (its `loss`)
        w_linear = self.W_enc.linear(class_text)
        raw = self.foundation(batch.audio, batch.video)
        o = self.O_enc(raw)
        rows = F.one_hot(batch.target, len(class_text)).to(w_linear.dtype)
        w_hat = self.W_enc.after_linear(rows @ w_linear)
        theta_o = self.O_proj(o)
        rho_o = self.D_o(theta_o)
        theta_w = self.W_proj(w_hat)
        rho_w = self.D_w(theta_w)
        student = self.sample_direction(theta_o, batch.audio, batch.video)
        classes = self.class_direction(self.W_proj(self.W_enc.after_linear(w_linear)))
        logits = student @ classes.T
        if p.hypersphere:
            logits = logits / p.temperature
        ce = F.cross_entropy(logits, batch.target)
        reg = F.mse_loss(theta_o, theta_w)
        rec = F.mse_loss(w_hat, rho_o) + F.mse_loss(w_hat, rho_w)
        zero = ce.new_zeros(())
        distill = zero
        if p.dp_weight > 0:
            distill = distill + p.dp_weight * self.distribution_loss(student, classes, raw, class_text)
        if p.rp_weight > 0:
            distill = distill + p.rp_weight * self.relation_loss(student, raw)
        hup = self.hup_loss(student, raw, batch.target) if p.hup_weight > 0 else zero
        total = rec + reg + ce + distill + p.hup_weight * hup
        return total, {"cross_entropy": ce, "loss_reg": reg, "loss_cmd_rec": rec, "semantic_distill": distill,
                       "semantic_hup": hup}

    def replay_forward(self, batch: Batch) -> None:
        # their get_embeddings() in train mode: O_enc, W_enc, O_proj, W_proj, then the AV-MoE
        with torch.no_grad():
            o = self.O_enc(self.foundation(batch.audio, batch.video))
            first_rows, distinct = first_row_of_each_class(batch.target)
            w_linear = self.W_enc.linear(batch.text[first_rows][:, self._labels])
            w_hat = self.W_enc.after_linear(w_linear.index_select(0, distinct))
            theta_o = self.O_proj(o)
            self.W_proj(w_hat)
            self.sample_direction(theta_o, batch.audio, batch.video)

    # ------------------------------------------------------------------ evaluation

    def far_distances(self, adapted, audio, video, class_text) -> torch.Tensor:
        """FAR: the adapted distances fused with those between unit [v|a] and unit [w_clip|w_clap]."""
        p = self.params
        if not p.far or p.far_weight >= 1.0:
            return adapted
        raw = torch.cdist(F.normalize(self.foundation(audio, video), dim=1),
                          F.normalize(class_text[:, self._labels], dim=1))
        if p.far_scale == "set":  # theirs: one ratio over every sample and class evaluated together
            raw = raw * (adapted.mean().clamp_min(1e-6) / raw.mean().clamp_min(1e-6))
        elif p.far_scale == "sample":  # each sample's own ratio, so batches of any size agree
            raw = raw * (adapted.mean(1, keepdim=True).clamp_min(1e-6) / raw.mean(1, keepdim=True).clamp_min(1e-6))
        return p.far_weight * adapted + (1.0 - p.far_weight) * raw

    def distances(self, audio, video, class_text):
        adapted = torch.cdist(self.embed_samples(audio, video), self.class_embeddings(class_text))
        return {"both": self.far_distances(adapted, audio, video, class_text)}
