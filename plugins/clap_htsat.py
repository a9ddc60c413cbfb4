"""The audio branch of WavCaps CLAP (HTSAT-BERT), written for clipclap with torch only.

waveform (B, 320000) at 32 kHz -> log-mel (clipclap_plugins.logmel) -> BatchNorm over mel bins ->
the spectrogram folded into a square "image" (time stretched to spec_size·freq_ratio by bicubic
interpolation, then cut into freq_ratio strips stacked along frequency) -> an HTS-AT Swin
transformer (patch embedding, windowed attention with relative position bias, shifted windows,
patch merging) -> the mean of the final normalised tokens (`num_features`) -> audio_proj
(Linear, ReLU, Linear) -> L2 normalisation.

Module names follow the WavCaps checkpoints (`audio_encoder.audio_enc.layers.0.blocks.0.attn.qkv.weight`,
`audio_proj.0.weight`, ...) so `HTSAT_BERT_zero_shot.pt` loads by its own keys. The checkpoint's
front-end buffers (`audio_feats_extractor.*`: STFT kernels and mel filters) are constants that
clipclap computes itself (tests check them equal); they are skipped when loading. The tagging
head (`tscam_conv`, `head`) is kept for loading but plays no part in the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from clipclap_plugins.logmel import LogMel


@dataclass(frozen=True)
class HtsatConfig:
    """HTS-AT hyperparameters; the defaults are the published WavCaps model's."""

    spec_size: int = 256
    patch_size: int = 4
    patch_stride: int = 4
    window_size: int = 8
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    num_classes: int = 527
    mlp_ratio: float = 4.0
    n_mels: int = 64
    embed_size: int = 1024
    audio_args: dict = field(default_factory=lambda: {"sr": 32000, "n_fft": 1024, "hop_length": 320,
                                                      "f_min": 50, "f_max": 14000})

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def freq_ratio(self) -> int:
        return self.spec_size // self.n_mels


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B·nW, w·w, C)."""
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w) * (wd // w))
    return x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        if min(resolution) <= window:  # the window covers everything: no partition, no shift
            window, shift = min(resolution), 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift:
            h, w = resolution
            region = torch.zeros(1, h, w, 1)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for i, (hs, ws) in enumerate((a, b) for a in cuts for b in cuts):
                region[:, hs, ws, :] = i
            ids = _windows(region, window)[..., 0]
            diff = ids[:, None, :] - ids[:, :, None]
            self.register_buffer("attn_mask", torch.zeros_like(diff).masked_fill(diff != 0, -100.0))
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = _unwindows(self.attn(_windows(y, self.window), self.attn_mask), self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, resolution: tuple[int, int], dim: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, cfg: HtsatConfig, i: int, resolution: tuple[int, int]):
        super().__init__()
        dim = cfg.embed_dim * 2 ** i
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, cfg.num_heads[i], cfg.window_size, 0 if j % 2 == 0 else cfg.window_size // 2,
                      cfg.mlp_ratio) for j in range(cfg.depths[i]))
        self.downsample = PatchMerging(resolution, dim) if i < len(cfg.depths) - 1 else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, cfg: HtsatConfig):
        super().__init__()
        pad = (cfg.patch_size - cfg.patch_stride) // 2
        self.proj = nn.Conv2d(1, cfg.embed_dim, cfg.patch_size, cfg.patch_stride, padding=pad)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """HTS-AT as an audio feature extractor: log-mel (B, 1, T, F) -> pooled tokens (B, num_features)."""

    def __init__(self, cfg: HtsatConfig):
        super().__init__()
        self.cfg = cfg
        self.bn0 = nn.BatchNorm2d(cfg.n_mels)
        self.patch_embed = PatchEmbed(cfg)
        grid = cfg.spec_size // cfg.patch_stride
        self.layers = nn.ModuleList(BasicLayer(cfg, i, (grid // 2 ** i, grid // 2 ** i))
                                    for i in range(len(cfg.depths)))
        self.norm = nn.LayerNorm(cfg.num_features)
        sf = cfg.spec_size // 2 ** (len(cfg.depths) - 1) // cfg.patch_stride // cfg.freq_ratio
        self.tscam_conv = nn.Conv2d(cfg.num_features, cfg.num_classes, (sf, 3), padding=(0, 1))  # tagging head
        self.head = nn.Linear(cfg.num_classes, cfg.num_classes)  # (unused for embeddings)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, F) -> (B, 1, spec_size, spec_size): time stretched, then folded into F strips."""
        cfg = self.cfg
        target_t, target_f = cfg.spec_size * cfg.freq_ratio, cfg.spec_size // cfg.freq_ratio
        if x.shape[2] < target_t:
            x = F.interpolate(x, (target_t, x.shape[3]), mode="bicubic", align_corners=True)
        if x.shape[3] < target_f:
            x = F.interpolate(x, (x.shape[2], target_f), mode="bicubic", align_corners=True)
        b, c, t, f = x.shape
        x = x.transpose(2, 3).reshape(b, c, f, cfg.freq_ratio, t // cfg.freq_ratio)
        return x.permute(0, 1, 3, 2, 4).reshape(b, c, cfg.freq_ratio * f, t // cfg.freq_ratio)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
        x = self.patch_embed(self.to_image(x))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(dim=1)  # the average of every token ("embedding" / latent output)


class ClapAudio(nn.Module):
    """WavCaps CLAP audio path: waveform -> L2-normalised audio embedding (and pooled features)."""

    def __init__(self, cfg: HtsatConfig = HtsatConfig()):
        super().__init__()
        a = cfg.audio_args
        self.logmel = LogMel(a["sr"], a["n_fft"], a["hop_length"], cfg.n_mels, a["f_min"], a["f_max"])
        self.audio_encoder = nn.Module()
        self.audio_encoder.audio_enc = HTSAT(cfg)
        self.audio_proj = nn.Sequential(nn.Linear(cfg.num_features, cfg.embed_size), nn.ReLU(),
                                        nn.Linear(cfg.embed_size, cfg.embed_size))

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder.audio_enc(self.logmel(wave))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_proj(self.features(wave)), dim=-1)

    def load_reference(self, state: dict[str, torch.Tensor]) -> None:
        """Load a WavCaps state dict by its own key names (text-branch keys and front-end buffers skipped)."""
        load_by_key_names(self, state)


def load_by_key_names(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the entries of a (larger) checkpoint whose names the module has; KeyError if any is missing."""
    own = module.state_dict()
    keep = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(keep))
    if missing:
        raise KeyError(f"checkpoint lacks {missing[0]!r} ({len(missing)} keys missing)")
    module.load_state_dict(keep)
