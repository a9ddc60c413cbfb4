"""Decoding videos with PyAV (SPEC.md "Features and label embeddings").

* the middle frame as RGB uint8 (H, W, 3), reached by seeking, not by decoding the whole video;
* the audio track resampled to 32 kHz keeping its channels, averaged to mono (as librosa's
  mono), then centre-cropped or zero-padded to 10 s.

Every way a file can be unreadable becomes a `MediaError` whose message is the reason recorded
in the store (corrupt container, no video stream, no frames, no audio stream, zero length).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from clipclap_cli.errors import ClipclapError
from clipclap_cli.extras import need

SAMPLE_RATE = 32_000
CLIP_SECONDS = 10


class MediaError(ClipclapError):
    """A video cannot be decoded; the message says why."""


def _open(path: Path):
    av = need("av", "extract", "decoding videos")

    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError(f"unreadable container ({type(e).__name__}: {getattr(e, 'strerror', None) or e})") from None


def middle_frame(path: Path, frames: int = 1) -> np.ndarray:
    """RGB uint8 frames (frames, H, W, 3) at evenly spaced times; frames=1 is the middle frame."""
    av = need("av", "extract", "decoding videos")

    with _open(path) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 1_000_000)
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        targets = [duration * (i + 0.5) / frames if frames > 1 else duration / 2 for i in range(frames)]
        out = []
        try:
            for t in targets:
                out.append(_frame_at(container, stream, t, tb))
        except av.FFmpegError as e:
            raise MediaError(f"corrupt video stream ({type(e).__name__})") from None
        return np.stack(out)


def _frame_at(container, stream, t: float, tb) -> np.ndarray:
    start = stream.start_time or 0
    container.seek(int(t / tb) + start, stream=stream, backward=True, any_frame=False)
    chosen = None
    for frame in container.decode(stream):
        chosen = frame
        if frame.pts is not None and (frame.pts - start) * tb >= t:
            break
    if chosen is None:
        raise MediaError("no video frames")
    return chosen.to_ndarray(format="rgb24")


def audio_clip(path: Path, sample_rate: int = SAMPLE_RATE, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """Mono float32 waveform of exactly `seconds` at `sample_rate` (centre crop or zero pad)."""
    av = need("av", "extract", "decoding videos")

    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks += [r.to_ndarray() for r in resampler.resample(frame)]
            chunks += [r.to_ndarray() for r in resampler.resample(None)]
        except av.FFmpegError as e:
            raise MediaError(f"corrupt audio stream ({type(e).__name__})") from None
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise MediaError("zero-length audio")
    wave = np.concatenate(chunks, axis=1).astype(np.float32).mean(axis=0)
    target = round(sample_rate * seconds)
    if len(wave) >= target:
        start = (len(wave) - target) // 2
        return np.ascontiguousarray(wave[start:start + target])
    return np.pad(wave, (0, target - len(wave)))
