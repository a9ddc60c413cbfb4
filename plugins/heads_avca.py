"""AVCA (audio-visual cross-attention) and Hyper-multiple (AVCA + hyperbolic alignment).

BASELINES.md 4.5-4.6, with the label dimension (W_proj input, D output) set to the dataset's
(1536 for [CLIP | CLAP]) and the 300-wide token width kept. State-dict names are the AVCA-GZSL
code's. Quirks kept because they shape the published numbers: `pos_emb1D` is not trained (a
fixed N(0, 1) buffer, quirk 5); `momentum` applies only to the last batch norm of the
hidden-layer networks (quirk 7); the extra train-mode forward after each step (quirk 6,
`replay_forward`). Test: the video branch after cross-attention, θ_v, against W_proj(w_c).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipclap_cli.api import Batch, Dropout, FusionHead, check_ranges, fbrd

AVCA_TRAINING = {"lr": 1e-3, "batch_size": 256, "batches_per_epoch": 500, "epochs": 50, "weight_decay": 1e-5}


class EmbeddingNet(nn.Module):
    """AVCA's EmbeddingNet: FBRD(d_in -> hidden) + FBRD(hidden -> d_out, momentum), or one FBRD."""

    def __init__(self, d_in: int, d_out: int, dropout: float, hidden: int | None = None, momentum: float = 0.1):
        super().__init__()
        if hidden is None:
            layers = fbrd(d_in, d_out, dropout)  # the momentum argument is ignored here, as in the original
        else:
            layers = fbrd(d_in, hidden, dropout) + fbrd(hidden, d_out, dropout, momentum)
        self.fc = nn.Sequential(*layers)

    def forward(self, x):
        return self.fc(x)


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x):
        return self.fn(self.norm(x))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), Dropout(dropout))

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, dim),
                                 Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm transformer: x += MHA(LN(x)); x += FF(LN(x)) per layer."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([_PreNorm(dim, _Attention(dim, heads, dim_head, dropout)),
                           _PreNorm(dim, _FeedForward(dim, mlp_dim, dropout))])
            for _ in range(depth))

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class AvcaHead(FusionHead):
    """AVCA-GZSL: audio and video encoders, two-token cross-attention, projections to 64-d.

    Loss (all weights 1): reconstruction of w from ρ_a, ρ_v, ρ_w; decoder triplets; the four
    θ triplets; the additional triplets (c1 = c2 = 1); the regulariser (φ reconstruction and
    θ_a/θ_v ≈ θ_w, targets not detached). Defaults are the UCF cls-feature run script's.
    """

    head_id = "avca"
    needs_negatives = True
    train_defaults = AVCA_TRAINING

    @dataclass(frozen=True)
    class Params:
        width: int = 300
        "Token width of the encoders and the cross-attention (the original's 300)"
        dim_out: int = 64
        "Width of the shared embedding space"
        encoder_hidden: int = 512
        "Hidden width of the audio and video encoders (embeddings_hidden_size)"
        decoder_hidden: int = 512
        "Hidden width of the projections (decoder_hidden_size)"
        dropout_encoder: float = 0.2
        "embedding_dropout (encoders and cross-attention)"
        dropout_decoder: float = 0.3
        "decoder_dropout (A_proj, V_proj)"
        additional_dropout: float = 0.5
        "additional_dropout (W_proj, D, A_rec, V_rec)"
        momentum: float = 0.99
        "Batch-norm momentum of the last layer of hidden-layer networks (0.99 in the cls scripts)"
        depth: int = 1
        "Cross-attention layers"

        def __post_init__(self):
            check_ranges(self, sizes=("width", "dim_out", "encoder_hidden", "decoder_hidden", "depth"),
                         rates=("dropout_encoder", "dropout_decoder", "additional_dropout"))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        p, width = params, params.width
        self.register_buffer("pos_emb1D", torch.randn(2, width))  # never trained (quirk 5)
        self.A_enc = EmbeddingNet(dims.audio, width, p.dropout_encoder, p.encoder_hidden, p.momentum)
        self.V_enc = EmbeddingNet(dims.video, width, p.dropout_encoder, p.encoder_hidden, p.momentum)
        self.cross_attention = Transformer(width, p.depth, 3, width // 3, 64, p.dropout_encoder)
        self.W_proj = EmbeddingNet(dims.text, p.dim_out, p.additional_dropout)
        self.D = EmbeddingNet(p.dim_out, dims.text, p.additional_dropout)
        self.A_proj = EmbeddingNet(width, p.dim_out, p.dropout_decoder, p.decoder_hidden, p.momentum)
        self.V_proj = EmbeddingNet(width, p.dim_out, p.dropout_decoder, p.decoder_hidden, p.momentum)
        self.A_rec = EmbeddingNet(p.dim_out, width, p.additional_dropout)
        self.V_rec = EmbeddingNet(p.dim_out, width, p.additional_dropout)

    def encode(self, audio, video):
        """(φ_a, φ_v) before and (θ_a, θ_v) after cross-attention and projection."""
        phi_a, phi_v = self.A_enc(audio), self.V_enc(video)
        z = self.cross_attention(torch.stack((phi_a + self.pos_emb1D[0], phi_v + self.pos_emb1D[1]), dim=1))
        theta_a, theta_v = self.A_proj(phi_a + z[:, 0]), self.V_proj(phi_v + z[:, 1])
        return phi_a, phi_v, theta_a, theta_v

    def _forward(self, audio, video, text):
        phi_a, phi_v, theta_a, theta_v = self.encode(audio, video)
        theta_w = self.W_proj(text)
        return {"phi_a": phi_a, "phi_v": phi_v, "theta_a": theta_a, "theta_v": theta_v, "theta_w": theta_w,
                "rho_a": self.D(theta_a), "rho_v": self.D(theta_v), "rho_w": self.D(theta_w),
                "phi_a_rec": self.A_rec(theta_a), "phi_v_rec": self.V_rec(theta_v)}

    def loss_terms(self, batch: Batch) -> tuple[dict, dict, dict[str, torch.Tensor]]:
        pos = self._forward(batch.audio, batch.video, batch.text)
        neg = self._forward(batch.audio_neg, batch.video_neg, batch.text_neg)
        w = batch.text

        def trip(x, p, n):
            return F.triplet_margin_loss(x, p, n, margin=1.0)

        ta, tv, tw = pos["theta_a"], pos["theta_v"], pos["theta_w"]
        parts = {
            "l_rec": F.mse_loss(pos["rho_v"], w) + F.mse_loss(pos["rho_a"], w) + F.mse_loss(pos["rho_w"], w),
            "l_ct": trip(pos["rho_w"], pos["rho_a"], neg["rho_a"]) + trip(pos["rho_w"], pos["rho_v"], neg["rho_v"]),
            "l_w": (trip(tw, ta, neg["theta_a"]) + trip(ta, tw, neg["theta_w"])
                    + trip(tw, tv, neg["theta_v"]) + trip(tv, tw, neg["theta_w"])),
            "l_t": (trip(ta, tw, neg["theta_a"]) + trip(tv, tw, neg["theta_v"])
                    + trip(tw, ta, neg["theta_w"]) + trip(tw, tv, neg["theta_w"])),
            "l_reg": (F.mse_loss(pos["phi_v_rec"], pos["phi_v"]) + F.mse_loss(pos["phi_a_rec"], pos["phi_a"])
                      + F.mse_loss(tv, tw) + F.mse_loss(ta, tw)),
        }
        return pos, neg, parts

    def loss(self, batch, class_text):
        _, _, parts = self.loss_terms(batch)
        return sum(parts.values()), parts

    def replay_forward(self, batch: Batch) -> None:
        # the original's get_embeddings(a, v, w) in train mode after the step, outputs discarded
        with torch.no_grad():
            self.encode(batch.audio, batch.video)
            self.W_proj(batch.text)

    def distances(self, audio, video, class_text):
        _, _, _, theta_v = self.encode(audio, video)
        return {"both": torch.cdist(theta_v, self.W_proj(class_text))}


def _hyperbolic(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """logmap0_c(project_c(x)) (hyptorch's pmath); c broadcasts against x's rows."""
    sqrt_c = c.sqrt()
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    max_norm = (1 - 1e-3) / sqrt_c
    y = torch.where(norm > max_norm, x / norm * max_norm, x)
    y_norm = y.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    scaled = (sqrt_c * y_norm).clamp(max=1 - 1e-5)
    return torch.atanh(scaled) * y / (sqrt_c * y_norm)


def _cosine_structure(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x, dim=-1)
    return x @ x.transpose(-1, -2)


class HyperMultipleHead(AvcaHead):
    """Hyper-multiple (Hyper-AVZSL): AVCA plus a hyperbolic alignment of the encoder outputs.

    L_align = 1e-3 · mean over K curvatures of [MSE(S(h_c(φ_v)), S(h_c(φ_a))) + same for the
    negatives], S = cosine-similarity matrix of the batch, h_c = logmap0 ∘ project with
    per-sample curvature c = curvature · σ(Linear([φ_v ; φ_a]))_k. Quirk 11: h_c only rescales
    each row, which S normalises away, so the term equals the Euclidean cosine-structure
    alignment and the curvature network gets no gradient (weight decay only). It is kept, with
    its parameters, so the model matches the original.
    """

    head_id = "hyper-multiple"

    @dataclass(frozen=True)
    class Params(AvcaHead.Params):
        curvature: float = 0.01
        "Base curvature"
        num_curvature: int = 2
        "Number of adaptive curvatures (Hyper-multiple: 2)"
        align_weight: float = 1e-3
        "Weight of the alignment term (hard-coded 1e-3 in the original)"

        def __post_init__(self):
            super().__post_init__()
            check_ranges(self, sizes=("num_curvature",))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        self.curvature_net = nn.Linear(2 * params.width, params.num_curvature)

    def _align(self, phi_a, phi_v):
        c = self.params.curvature * torch.sigmoid(self.curvature_net(torch.cat((phi_v, phi_a), dim=1)))
        terms = [F.mse_loss(_cosine_structure(_hyperbolic(phi_v, c[:, k:k + 1])),
                            _cosine_structure(_hyperbolic(phi_a, c[:, k:k + 1]))) for k in range(c.shape[1])]
        return torch.stack(terms).mean()

    def loss(self, batch, class_text):
        pos, neg, parts = self.loss_terms(batch)
        parts["l_align"] = self.params.align_weight * (self._align(pos["phi_a"], pos["phi_v"])
                                                       + self._align(neg["phi_a"], neg["phi_v"]))
        return sum(parts.values()), parts
