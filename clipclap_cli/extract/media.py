"""Decoding videos with PyAV (SPEC.md "Features and label embeddings").

* the frame a frame recipe picks (`frame_recipes.py`), as uint8 (H, W, 3): the clean recipe's
  frame on screen at the middle of the video, reached by seeking; the released features'
  recipes' frame at an index of the decoded frames, in BGR, as their scripts took it;
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
from clipclap_cli.frame_recipes import FrameRecipe

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


def recipe_frames(path: Path, recipe: FrameRecipe, frames: int = 1) -> np.ndarray:
    """The frame(s) `recipe` picks, as uint8 (frames, H, W, 3) in its channel order and pixel
    conversion, turned as the display matrix says (as OpenCV does). `frames` > 1 (clean
    recipes only) takes evenly spaced times instead of the middle."""
    av = need("av", "extract", "decoding videos")

    if frames > 1 and recipe.select != "middle-time":
        raise MediaError(f"frame recipe {recipe.name!r} picks one frame; --frames {frames} needs a time-based recipe")
    try:
        if recipe.select == "middle-time":
            picked = _frames_on_screen(path, [Fraction(2 * i + 1, 2 * frames) for i in range(frames)])
        else:
            picked = [_frame_at_index(path, recipe)]
    except av.FFmpegError as e:
        raise MediaError(f"corrupt video stream ({type(e).__name__})") from None
    return np.stack([_picture(frame, recipe) for frame in picked])


def _video_stream(container):
    if not container.streams.video:
        raise MediaError("no video stream")
    return container.streams.video[0]


def _frames_on_screen(path: Path, fractions: list[Fraction]) -> list:
    """For each fraction f, the frame on screen at start + f * duration: the last frame whose
    timestamp is at or before it. Exact: timestamps and the duration stay rationals."""
    with _open(path) as container:
        stream = _video_stream(container)
        tb = stream.time_base or Fraction(1, 1_000_000)
        start = stream.start_time or 0
        if stream.duration:
            duration = Fraction(stream.duration)
        elif container.duration:
            duration = Fraction(container.duration, 1_000_000) / tb
        else:
            duration = Fraction(0)
        out = []
        for f in fractions:
            target = start + f * duration  # in units of the stream's time base
            frame = _last_at_or_before(container, stream, target, int(target))
            if frame is None:  # the seek landed after it: decode from the start
                frame = _last_at_or_before(container, stream, target, start)
            if frame is None:
                raise MediaError("no video frames")
            out.append(frame)
        return out


def _last_at_or_before(container, stream, target: Fraction, seek_to: int):
    """Seek to the keyframe at or before `seek_to`, then decode: the last frame with pts <=
    target; the first frame when none is (None when there is none at all, or when the seek
    landed after `target` and an earlier start may hold it)."""
    container.seek(seek_to, stream=stream, backward=True, any_frame=False)
    chosen = first = None
    for frame in container.decode(stream):
        if first is None:
            first = frame
            if frame.pts is not None and frame.pts > target and seek_to > (stream.start_time or 0):
                return None
        if frame.pts is not None and frame.pts > target:
            break
        chosen = frame
    return chosen if chosen is not None else first


def _frame_at_index(path: Path, recipe: FrameRecipe):
    """The frame at the recipe's index of the decoded frames (OpenCV's reading order), counting
    as the recipe says; an index beyond the frames decoded gives a black frame or a failure."""
    with _open(path) as container:
        stream = _video_stream(container)
        stated = _container_count(container, stream)
        if recipe.count == "container":
            count = stated
        else:  # a first pass, as the reference's: frames decoded, at most the stated count
            count = 0
            for _ in container.decode(stream):
                count += 1
                if count >= stated:
                    break
    index = recipe.chosen_index(count)
    if count <= 0 or index < 0:
        raise MediaError(f"frame recipe {recipe.name!r} picks frame {index} of {count}: none to take")
    i = -1  # the last index decoded
    with _open(path) as container:
        stream = _video_stream(container)
        for i, frame in enumerate(container.decode(stream)):
            if i == index:
                return frame
            if i + 1 >= stated:
                break
        if recipe.missing == "black":
            return _Black(stream.codec_context.width, stream.codec_context.height)
    raise MediaError(f"frame recipe {recipe.name!r} picks frame {index} of {count}, and only {i + 1} decode")


class _Black:
    """The zero-filled frame the reference encodes when its index was never decoded."""

    rotation = 0

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height

    def to_ndarray(self, format: str) -> np.ndarray:
        return np.zeros((self.height, self.width, 3), dtype=np.uint8)


def _container_count(container, stream) -> int:
    """The frame count OpenCV reports (CAP_PROP_FRAME_COUNT): the stream's stated count, else the
    duration in seconds times the frame rate, rounded."""
    if stream.frames:
        return int(stream.frames)
    if container.duration:
        seconds = Fraction(container.duration, 1_000_000)
    elif stream.duration and stream.time_base:
        seconds = stream.duration * stream.time_base
    else:
        return 0
    rate = stream.guessed_rate or stream.average_rate or 0
    return int(seconds * Fraction(rate) + Fraction(1, 2))


def _picture(frame, recipe: FrameRecipe) -> np.ndarray:
    """A decoded frame as the recipe's uint8 picture: channel order, display rotation, pixels."""
    picture = frame.to_ndarray(format="bgr24" if recipe.channels == "bgr" else "rgb24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # counterclockwise quarter turns
    if turns % 2 and recipe.quarter_turns == "opencv-4.6":  # the scripts' OpenCV turned these the other way
        turns = (turns + 2) % 4
    if turns:
        picture = np.ascontiguousarray(np.rot90(picture, k=turns))
    if recipe.pixels == "float-round-trip":  # v * 255 cast to uint8 wraps: (256 - v) mod 256
        picture = ((picture.astype(np.uint16) * 255) % 256).astype(np.uint8)
    return picture


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
