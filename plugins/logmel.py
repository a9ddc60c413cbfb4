"""The CLAP (WavCaps HTS-AT) log-mel front end in torch only: no torchaudio, no librosa.

STFT n_fft 1024 with a periodic Hann window, hop 320, centred with reflect padding; power
spectrogram; 64 Slaney-scale, Slaney-normalised mel filters from 50 Hz to 14 kHz (librosa's
defaults, which the reference's torchlibrosa front end uses); 10·log10(max(x, 1e-10)).
"""

from __future__ import annotations

import numpy as np
import torch

_F_SP = 200.0 / 3  # Slaney mel scale: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ, _MIN_LOG_MEL, _LOGSTEP = 1000.0, 15.0, np.log(6.4) / 27.0


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, f / _F_SP)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters with Slaney area normalisation (as librosa)."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel(torch.nn.Module):
    """waveform (B, samples) -> log-mel (B, 1, frames, n_mels)."""

    def __init__(self, sr: int = 32000, n_fft: int = 1024, hop: int = 320, n_mels: int = 64,
                 fmin: float = 50.0, fmax: float = 14000.0):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filters(sr, n_fft, n_mels, fmin, fmax)).T.contiguous(),
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (B, F, T)
        mel = power.transpose(1, 2) @ self.mel  # (B, T, n_mels)
        return (10 * torch.log10(mel.clamp(min=1e-10)))[:, None]
