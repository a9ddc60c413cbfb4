"""Features of a user's own videos, as a model's features were made (`predict --videos`).

A model can only score features of the space it was trained in: those of the same encoders,
weights and parameters, from frames taken by the same frame recipe and audio taken the same way.
The dataset it was trained on records all of that (`Extraction.feature_provenance`, which
`TrainedModel.features` carries); here the encoders are built again from that record, their
weights checked to be the ones recorded, and the videos go through `extract`'s own decoding and
encoding (`extraction.encode_videos`), so that a video gives the very features `extract` would
have stored for it. A video that does not decode is reported with its reason and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from clipclap_cli.api import Sample
from clipclap_cli.errors import ClipclapError
from clipclap_cli.extract.extraction import AUDIO_SETTINGS, Decoder, encode_videos, video_jobs, weights_identity
from clipclap_cli.frame_recipes import get_recipe
from clipclap_cli.plugins.encoder_records import recorded_encoder

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
"File endings counted as videos in a folder (those of the `video-folder` format)"
CHUNK = 64
"Videos decoded and encoded at a time (as `extract --chunk`): memory stays bounded"


class VideoFeaturesError(ClipclapError):
    """The videos cannot be encoded as the model's features were; the message says why."""


def video_files(folder: Path) -> list[Path]:
    """The videos under `folder` (its subfolders too), in sorted order; refused when none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoFeaturesError(f"--videos {folder}: no such folder")
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise VideoFeaturesError(f"--videos {folder}: no videos ({', '.join(VIDEO_SUFFIXES)}) in it")
    return found


def video_ids(paths: list[Path]) -> list[str]:
    """One id per video: its path below the videos' common folder, without the ending (as the
    `video-folder` format names them: `Class/clip`), or with it where two would be the same."""
    paths = [Path(p).absolute() for p in paths]
    if not paths:
        return []
    parts = [p.parent.parts for p in paths]
    common = 0
    while all(len(x) > common and x[common] == parts[0][common] for x in parts):
        common += 1
    relative = [Path(*p.parts[common:]) for p in paths]
    stems = [r.with_suffix("").as_posix() for r in relative]
    return [s if stems.count(s) == 1 else r.as_posix() for s, r in zip(stems, relative, strict=True)]


def encoders_of(features: dict, pm, device: str = "cpu") -> dict:
    """The model's encoders ({modality: encoder}) built again from what its features record
    (`recorded_encoder`), with weights that must be the recorded ones."""
    out = {}
    for modality in ("video", "audio"):
        record = features.get(modality) if isinstance(features, dict) else None
        if not isinstance(record, dict) or not record.get("encoder"):
            raise VideoFeaturesError(f"the model's {modality} features name no encoder (they were imported, not "
                                     "extracted): new videos need a model trained on features from `clipclap extract`")
        enc = recorded_encoder(record, pm, device, f"the model's {modality} features")
        enc.check_weights()
        _same_weights(modality, enc.encoder_id, record, enc)
        out[modality] = enc
    return out


def _same_weights(modality: str, name: str, record: dict, enc) -> None:
    """Refuse an encoder whose weights (model, sha256, random or not) differ from the recorded ones."""
    recorded, here = weights_identity(record), weights_identity(enc.provenance())
    differs = [f"{k} {recorded[k]!r} recorded, {here.get(k)!r} here" for k in recorded if here.get(k) != recorded[k]]
    if differs:
        raise VideoFeaturesError(f"the {name} encoder here is not the one that made the model's {modality} features "
                                 f"({'; '.join(differs)}): point it at the same weights (its checkpoint setting or "
                                 "environment variable)")


def _recipe(features: dict) -> tuple[str, int]:
    """The frame recipe and frames per video the model's video features were taken with, refused
    when this clipclap's recipe of that name takes frames otherwise; the audio settings likewise."""
    video, audio = features["video"], features["audio"]
    recorded = video.get("frame_recipe") or {}
    if not recorded.get("name"):
        raise VideoFeaturesError("the model's video features record no frame recipe: extract them again with "
                                 "this clipclap to use the model on videos")
    recipe = get_recipe(recorded["name"])
    if recipe.as_dict() != recorded:
        raise VideoFeaturesError(f"frame recipe {recipe.name!r} of this clipclap takes frames otherwise than the one "
                                 "the model's video features were taken with; use the clipclap version that made them")
    if audio.get("audio", AUDIO_SETTINGS) != AUDIO_SETTINGS:
        raise VideoFeaturesError(f"the model's audio features were taken as {audio['audio']}; this clipclap takes "
                                 f"audio as {AUDIO_SETTINGS}")
    return recipe.name, int(video.get("frames", 1))


def features_of_videos(paths: list[Path], features: dict, pm, workers: int = 0, *, device: str = "cpu",
                       batch_size: int = 32, on_progress: Callable[[int, int], None] | None = None):
    """The features of `paths` as the model's were made (`features`: `TrainedModel.features`).

    Returns (ids, audio (n, da), video (n, dv), failures): the ids and float32 torch features
    of the videos that decoded, in the order given, and {id: reason} of those that did not.
    `workers` decoding processes (0: this one); `on_progress(done, total)` after each chunk."""
    import torch

    paths = [Path(p) for p in paths]
    encoders = encoders_of(features, pm, device)
    recipe, frames = _recipe(features)
    ids = video_ids(paths)
    samples = [Sample(id=i, label="", video_path=p, audio_path=p) for i, p in zip(ids, paths, strict=True)]
    kept: list[str] = []
    got: dict[str, list[np.ndarray]] = {"audio": [], "video": []}
    failures: dict[str, str] = {}
    decoder = Decoder(workers)
    try:
        for start in range(0, len(samples), CHUNK):
            part = samples[start:start + CHUNK]
            feats, done, reasons = encode_videos(decoder, video_jobs(part, encoders, frames, recipe), encoders,
                                                 batch_size)
            kept += [s.id for s, ok in zip(part, done, strict=True) if ok]
            failures.update({s.id: why or "failed" for s, ok, why in zip(part, done, reasons, strict=True) if not ok})
            for modality in got:
                got[modality].append(feats[modality][done])
            if on_progress is not None:
                on_progress(min(start + CHUNK, len(samples)), len(samples))
    finally:
        decoder.close()

    def stacked(modality: str) -> torch.Tensor:
        rows = got[modality] or [np.zeros((0, encoders[modality].dim), dtype=np.float32)]
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(rows), dtype=np.float32))

    return kept, stacked("audio"), stacked("video"), failures
