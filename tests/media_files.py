"""Small mp4 files written with PyAV for the decoding and extraction tests."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, seconds: float = 2.0, fps: int = 10, size=(32, 24), freq: float = 440.0,
                audio: bool = True, frames: bool = True, channel: int = 0) -> Path:
    """A clip whose `channel` colour ramps 0 -> 255 over time, with a stereo tone (left f, right 2f)."""
    container = av.open(str(path), "w")
    video = container.add_stream("mpeg4", rate=fps)
    video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
    if audio:
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "stereo"
    n = int(seconds * fps) if frames else 0
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[..., channel] = int(255 * i / max(n - 1, 1))
        for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    if audio:
        sr = 16000
        t = np.arange(int(seconds * sr)) / sr
        wave = np.stack([np.sin(2 * np.pi * freq * t), 0.5 * np.sin(4 * np.pi * freq * t)]).astype(np.float32)
        for start in range(0, wave.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = sr, start, fractions.Fraction(1, sr)
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    container.close()
    return path
