"""TCaF (temporal and cross-modal attention) on one audio and one video vector per video.

BASELINES.md 4.7. With one time step per modality the model is a 3-token transformer (CLS,
audio, video) with cross-modal attention only: CLS attends to everything, audio to CLS and video,
video to CLS and audio. Adaptation to per-video CLIP/CLAP inputs (quirk 12): the original
L2-normalises video over the *time* axis, which for one step turns every feature into a sign
vector, and divides audio by 255 (a VGGish scale). `fixed=true` (the default, because the
original behaviour destroys per-video features) normalises video over features and drops the
/255; `fixed=false` reproduces the original arithmetic. The time embedding sees t = 0 for the
single step, so the original's train/test time-stamp mismatch (quirk 13) vanishes. Defaults are
the UCF cls config (BASELINES.md 6.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipclap_cli.api import Batch, Block, Dropout, FusionHead, check_ranges

TCAF_TRAINING = {"lr": 7e-5, "batch_size": 64, "batches_per_epoch": 300, "epochs": 50, "weight_decay": 1e-5}


class _SharedNormLayer(nn.Module):
    """One transformer layer whose single LayerNorm serves both sub-blocks (as in TCaF)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_k = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_v = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), Dropout(dropout))
        self.ff = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), Dropout(dropout), nn.Linear(mlp_dim, dim),
                                Dropout(dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h = self.norm(x)
        q, k, v = (f(h).reshape(b, n, self.heads, -1).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        logits = (q @ k.transpose(-1, -2)) * self.scale
        logits = logits.masked_fill(~allowed, -torch.finfo(logits.dtype).max)
        x = x + self.to_out((logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1))
        return x + self.ff(self.norm(x))


class TcafHead(FusionHead):
    """Per-video TCaF: token encoders, modality + time embeddings, cross-modal transformer on
    [CLS, audio, video], then ClipClap-style projections of the CLS output.

    Loss: CE(θ_o · W_proj(W_train)ᵀ) + MSE(θ_o, θ_w) + MSE(w, ρ_o) + MSE(w, ρ_w); no negatives.
    """

    head_id = "tcaf"
    train_defaults = TCAF_TRAINING

    @dataclass(frozen=True)
    class Params:
        fixed: bool = True
        "Normalise video over features and skip /255 (per-video inputs); false = original arithmetic"
        width: int = 300
        "Transformer width"
        embed_dim: int = 64
        "Modality/time embedding width (concatenated to each token)"
        encoder_hidden: int = 512
        "Hidden width of the token encoders"
        dropout_encoder: float = 0.3
        "Dropout of the token encoders"
        token_dropout: float = 0.2
        "Dropout after the token projection"
        depth: int = 6
        "Transformer layers"
        heads: int = 8
        "Attention heads"
        dim_head: int = 64
        "Width of each head"
        mlp_dim: int = 128
        "Feed-forward width"
        dropout_transformer: float = 0.3
        "Transformer dropout"
        dim_out: int = 64
        "Width of the shared embedding space"
        decoder_hidden: int = 512
        "Hidden width of O_proj and D_o"
        dropout_decoder: float = 0.1
        "Dropout of O_proj and D_o"
        additional_dropout: float = 0.1
        "Dropout of W_proj and D_w"

        def __post_init__(self):
            check_ranges(self, sizes=("width", "embed_dim", "encoder_hidden", "depth", "heads", "dim_head", "mlp_dim",
                                      "dim_out", "decoder_hidden"),
                         rates=("dropout_encoder", "token_dropout", "dropout_transformer", "dropout_decoder",
                                "additional_dropout"))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        p, w = params, params.width
        self.A_enc = Block([dims.audio, p.encoder_hidden, w], p.dropout_encoder)
        self.V_enc = Block([dims.video, p.encoder_hidden, w], p.dropout_encoder)
        self.modality_embedding = nn.Embedding(2, p.embed_dim)
        self.register_buffer("fourier", 10 * torch.randn(2, p.embed_dim // 2))
        self.time_proj = nn.Linear(p.embed_dim, p.embed_dim)
        self.audio_token = nn.Linear(w + p.embed_dim, w)
        self.video_token = nn.Linear(w + p.embed_dim, w)
        self.token_dropout = Dropout(p.token_dropout)
        self.cls_token = nn.Parameter(torch.randn(w))
        self.layers = nn.ModuleList(_SharedNormLayer(w, p.heads, p.dim_head, p.mlp_dim, p.dropout_transformer)
                                    for _ in range(p.depth))
        self.O_proj = Block([w, p.decoder_hidden, p.dim_out], p.dropout_decoder)
        self.D_o = Block([p.dim_out, p.decoder_hidden, dims.text], p.dropout_decoder)
        self.W_proj = Block([dims.text, p.dim_out], p.additional_dropout)
        self.D_w = Block([p.dim_out, dims.text], p.additional_dropout)
        # cross-modal attention only: rows attend to columns where True (CLS, audio, video)
        self.register_buffer("allowed", torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=torch.bool),
                             persistent=False)

    def _time(self, n: int, device) -> torch.Tensor:
        t = torch.zeros(n, 2, device=device)  # the single step sits at time 0
        proj = 2 * torch.pi * t @ self.fourier
        return self.time_proj(torch.cat((proj.sin(), proj.cos()), dim=1))

    def embed_samples(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        if self.params.fixed:
            video = F.normalize(video, dim=1)
        else:
            audio = audio / 255
            video = F.normalize(video[:, None, :], dim=1)[:, 0]  # over time: a sign vector for one step
        n, time = audio.shape[0], self._time(audio.shape[0], audio.device)
        extra_a = self.modality_embedding.weight[0] + time
        extra_v = self.modality_embedding.weight[1] + time
        tok_a = self.token_dropout(self.audio_token(torch.cat((self.A_enc(audio), extra_a), dim=1)))
        tok_v = self.token_dropout(self.video_token(torch.cat((self.V_enc(video), extra_v), dim=1)))
        x = torch.stack((self.cls_token.expand(n, -1), tok_a, tok_v), dim=1)
        for layer in self.layers:
            x = layer(x, self.allowed)
        return self.O_proj(x[:, 0])

    def loss(self, batch: Batch, class_text):
        theta_o = self.embed_samples(batch.audio, batch.video)
        rho_o = self.D_o(theta_o)
        theta_w = self.W_proj(batch.text)
        rho_w = self.D_w(theta_w)
        ce = F.cross_entropy(theta_o @ self.W_proj(class_text).T, batch.target)
        reg = F.mse_loss(theta_o, theta_w)
        rec = F.mse_loss(rho_o, batch.text) + F.mse_loss(rho_w, batch.text)
        return ce + reg + rec, {"cross_entropy": ce, "loss_reg": reg, "loss_rec": rec}

    def replay_forward(self, batch: Batch) -> None:
        with torch.no_grad():  # the original's get_embeddings() in train mode after each step
            self.embed_samples(batch.audio, batch.video)
            self.W_proj(batch.text)

    def distances(self, audio, video, class_text):
        return {"both": torch.cdist(self.embed_samples(audio, video), self.W_proj(class_text))}
