"""`extract --dry-run`: the videos found, how many are done, failed or pending, each shard's
share, and an estimated time from a short measured step (one or two videos decoded and
encoded in memory); nothing is written (no working group, no store)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from clipclap_cli.extract.extraction import Extraction, Shard, decode
from clipclap_cli.store.extraction_group import DONE, FAILED, PENDING


@dataclass(frozen=True)
class ExtractPreview:
    """What `extract` would do: counts of videos, each shard's chunks and pending videos, and
    the estimate (`seconds` for the pending videos of the shards shown, `per_video` measured)."""

    videos: int
    done: int
    failed: int
    pending: int
    found_in: str
    shards: list[dict]
    per_video: float
    seconds: float

    def as_json(self) -> dict:
        return {"videos": self.videos, "done": self.done, "failed": self.failed, "pending": self.pending,
                "status_from": self.found_in, "shards": self.shards,
                "seconds_per_video": round(self.per_video, 3), "estimated_seconds": round(self.seconds, 1)}


def preview(job: Extraction, part: Shard, workers: int, retry_failed: bool = False) -> ExtractPreview:
    """The dry run of `job` for `part` (this process's shard; every shard of its count shown);
    `retry_failed`: the failed videos count as pending, as `--retry-failed` makes them."""
    status, found_in = job.status_to_come()
    if retry_failed:
        status = {m: np.where(st == FAILED, PENDING, st) for m, st in status.items()}
    rows = np.stack(list(status.values())) if status else np.zeros((0, len(job.samples)), dtype=np.int8)
    pending = (rows == PENDING).any(axis=0)
    failed = (rows == FAILED).any(axis=0) & ~pending
    done = (rows == DONE).all(axis=0)
    shards = [dict(s, **{"this process": index == part.index})
              for index, s in enumerate(shard_shares(job, part.count, pending))]
    todo = [i for i in np.flatnonzero(pending)]
    per_video = measured_seconds_per_video(job, [job.samples[i] for i in todo[:2]], workers) if todo else 0.0
    mine = next(s for s in shards if s["this process"])["pending"]
    return ExtractPreview(len(job.samples), int(done.sum()), int(failed.sum()), int(pending.sum()), found_in,
                          shards, per_video, per_video * mine)


def shard_shares(job: Extraction, count: int, pending: np.ndarray) -> list[dict]:
    """Each of `count` shards' share of `job`: its chunks, videos and the videos of `pending`
    (one flag a video) in its chunks, as `Shard.chunks` deals them."""
    total_chunks = (len(job.samples) + job.chunk - 1) // job.chunk
    shares = []
    for index in range(count):
        chunks = Shard(index, count).chunks(total_chunks)
        lo, hi = chunks.start * job.chunk, min(chunks.stop * job.chunk, len(job.samples))
        shares.append({"shard": f"{index}/{count}", "chunks": len(chunks), "videos": hi - lo,
                       "pending": int(pending[lo:hi].sum())})
    return shares


def measured_seconds_per_video(job: Extraction, samples: list, workers: int) -> float:
    """Seconds per video here: `samples` (one or two pending ones) decoded and encoded in this
    process, the first also loading the encoders (not counted when there is a second). Decoding
    runs in `workers` processes in a real run, so its share is divided among them."""
    modalities = tuple(sorted(job.encoders))
    timings = []
    for s in samples:
        start = time.perf_counter()
        inputs, _ = decode((s.id, str(s.video_path) if s.video_path else None,
                            str(s.audio_path) if s.audio_path else None, modalities, job.frames, job.recipe))
        decoded = time.perf_counter()
        if inputs is not None:
            for modality, enc in job.encoders.items():
                enc.encode_batch([inputs[modality]])
        timings.append(((decoded - start) / max(workers, 1), time.perf_counter() - decoded))
    decode_s, encode_s = timings[-1]
    return max(decode_s + encode_s, 1e-4)
