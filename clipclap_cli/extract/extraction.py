"""`clipclap extract`: features of every video of a dataset, resumable and shardable.

Work happens in a working group `<store>/.extract-<dataset>/` beside the datasets:

    videos/ids, videos/labels          the adapter's videos, in its order
    features/<modality>   (N, dim)     pre-allocated float32, chunks of `chunk` rows, no compression
    status/<modality>     (N,) int8    0 pending, 1 done, 2 failed (same chunking)
    reasons               (N,) str     why a video failed

Rows are processed in whole chunks and each chunk belongs to exactly one shard (`--shard i/n`
or torchrun's RANK/WORLD_SIZE), so ranks never write the same chunk file. In a folder the first
process to arrive creates the working group (staged and renamed); behind an object-store URL,
which cannot rename, shard 0 creates it (its `settings` attribute last) and the others wait.
A chunk's features are written before its status, so a process killed at any moment leaves at
worst a pending chunk, redone by the next run. When every row of every encoder is done or failed, the dataset is
written into the store like an import (only the videos that decoded), failures listed in its
attributes; `--retry-failed` puts failed rows back to pending. In a folder one process takes a
writer lock for that; an object store has no exclusive create, so every shard that sees the
work finished writes the (identical) dataset, each as a new version, the newest one counting.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from clipclap_cli.api import FeatureBundle, Sample
from clipclap_cli.errors import ClipclapError, StoreError
from clipclap_cli.names import check_name
from clipclap_cli.plugins.contracts import check_encoded
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.store.locations import staging_name
from clipclap_cli.store.locks import exclusive

PENDING, DONE, FAILED = 0, 1, 2


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """'i/n', else torchrun's RANK and WORLD_SIZE, else the whole dataset."""
        if text is None:
            rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
            return cls(int(rank), int(world)) if rank is not None and world is not None else cls()
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise ClipclapError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
        if not 0 <= i < n:
            raise ClipclapError(f"--shard {text!r}: need 0 <= i < n")
        return cls(i, n)

    def chunks(self, total_chunks: int) -> range:
        """A contiguous, disjoint range of chunk numbers for this shard."""
        start = total_chunks * self.index // self.count
        return range(start, total_chunks * (self.index + 1) // self.count)


def decode(job: tuple[str, str | None, str | None, tuple[str, ...], int]):
    """Worker: decode what each encoder needs from one video; (inputs by modality) or an error reason."""
    from clipclap_cli.extract.media import MediaError, audio_clip, middle_frame

    _, video_path, audio_path, modalities, frames = job
    if video_path is None and audio_path is None:
        return None, "video file not found"
    try:
        out = {}
        if "video" in modalities:
            out["video"] = middle_frame(Path(video_path), frames)
        if "audio" in modalities:
            out["audio"] = audio_clip(Path(audio_path or video_path))
        return out, None
    except MediaError as e:
        return None, str(e)
    except Exception as e:  # any decoder failure is a per-video failure, recorded
        return None, f"{type(e).__name__}: {str(e)[:120]}"


class Extraction:
    """One dataset's extraction into `store` with `encoders` ({modality: encoder})."""

    def __init__(self, store: FeatureStore, dataset: str, samples: list[Sample], encoders: dict,
                 chunk: int = 64, frames: int = 1, description: dict | None = None):
        self.store, self.dataset, self.samples, self.encoders = store, dataset, samples, encoders
        self.chunk, self.frames = chunk, frames
        self.key = f".extract-{check_name('dataset', dataset)}"
        self.path = None if store.path is None else store.path / self.key  # a folder store's working folder
        self.description = description or {
            "classes": sorted({s.label for s in samples}), "partition": [-1] * len(samples), "class_splits": {}}
        self.classes = list(self.description["classes"])
        self.settings = {
            "ids": hashlib.sha256("\n".join(f"{s.id}\t{s.label}" for s in samples).encode()).hexdigest(),
            "encoders": {m: {"id": e.encoder_id, "dim": e.dim, "params": {k: str(v) for k, v in vars(e.params).items()
                                                                        if k != "device"}}
                         for m, e in sorted(encoders.items())},
            "chunk": chunk, "frames": frames,
        }

    # ------------------------------------------------------------------ working group
    def open(self, shard: Shard = Shard(), wait_s: float = 600.0, on_wait: Callable[[], None] | None = None):
        """Create the working group, or check an existing one's settings (see the module's doc).
        On an object store, shards other than 0 wait for shard 0 to create it (`on_wait` is
        called once when they start waiting)."""
        import zarr

        location = self.store.location
        self.store.open_for_writing()  # a clipclap store, or a new one: never a folder of the user's
        if self.path is not None and not self.path.exists():
            staging = self.path.parent / staging_name(self.path.name)
            self._create(staging)
            try:
                os.rename(staging, self.path)
            except OSError:  # another rank created it first
                shutil.rmtree(staging, ignore_errors=True)
        elif self.path is None and not self._created():
            if shard.index == 0:
                self._create(location.zarr(self.key))
            else:
                deadline = time.monotonic() + wait_s
                if on_wait is not None:
                    on_wait()
                while not self._created():
                    if time.monotonic() > deadline:
                        raise StoreError(f"shard 0 has not created the working group {location}/{self.key} "
                                         f"in {wait_s:.0f} s; start shard 0 (it creates it on object stores)")
                    time.sleep(1.0)
        group = zarr.open_group(location.zarr(self.key), mode="r+")
        if _comparable(group.attrs.get("settings")) != json.loads(json.dumps(self.settings)):
            raise StoreError(f"an extraction of {self.dataset!r} with other settings (videos, encoders or their "
                             f"parameters) is in {location}/{self.key}; rerun it as it was, or remove that folder "
                             "to start over")
        return group

    def _created(self) -> bool:
        """Whether the working group exists with its settings (they are written last)."""
        import zarr

        if not self.store.location.exists(self.key):
            return False
        return "settings" in zarr.open_group(self.store.location.zarr(self.key), mode="r").attrs

    def _create(self, where) -> None:
        """Build the working group at `where` (a folder or a zarr store), settings last."""
        import zarr

        n = len(self.samples)
        g = zarr.open_group(where, mode="w")
        ids = g.create_array("videos/ids", shape=(n,), dtype=str, chunks=(self.chunk,))
        ids[:] = np.asarray([s.id for s in self.samples], dtype=str)
        g.create_array("videos/labels", data=np.asarray([self.classes.index(s.label) for s in self.samples],
                                                        dtype=np.int32))
        for modality, enc in self.encoders.items():
            g.create_array(f"features/{modality}", shape=(n, enc.dim), dtype=np.float32,
                           chunks=(self.chunk, enc.dim), compressors=None, fill_value=0.0)
            g.create_array(f"status/{modality}", shape=(n,), dtype=np.int8, chunks=(self.chunk,), fill_value=0)
        reasons = g.create_array("reasons", shape=(n,), dtype=str, chunks=(self.chunk,))
        reasons[:] = np.asarray([""] * n, dtype=str)
        g.attrs.update({"settings": self.settings, "classes": self.classes})

    def status(self, group) -> dict[str, np.ndarray]:
        return {m: np.asarray(group[f"status/{m}"][:]) for m in self.encoders}

    def retry_failed(self, group) -> int:
        count = 0
        for m in self.encoders:
            st = np.asarray(group[f"status/{m}"][:])
            count = max(count, int((st == FAILED).sum()))
            group[f"status/{m}"][:] = np.where(st == FAILED, PENDING, st).astype(np.int8)
        return count

    # ------------------------------------------------------------------ the work
    def run(self, shard: Shard, workers: int, batch_size: int,
            on_progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        group = self.open()
        n = len(self.samples)
        chunks = shard.chunks((n + self.chunk - 1) // self.chunk)
        status = self.status(group)
        todo = [c for c in chunks
                if any((status[m][c * self.chunk:(c + 1) * self.chunk] == PENDING).any() for m in self.encoders)]
        total = sum(min(self.chunk, n - c * self.chunk) for c in todo)
        counts = {"videos": 0, "failed": 0}
        pool = ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) if workers > 0 else None
        try:
            for c in todo:
                failed = self._chunk(group, c, pool, batch_size)
                counts["videos"] += min(self.chunk, n - c * self.chunk)
                counts["failed"] += failed
                if on_progress is not None:
                    on_progress(counts["videos"], total)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return counts

    def _chunk(self, group, c: int, pool, batch_size: int) -> int:
        lo, hi = c * self.chunk, min((c + 1) * self.chunk, len(self.samples))
        modalities = tuple(sorted(self.encoders))
        jobs = [(s.id, str(s.video_path) if s.video_path else None, str(s.audio_path) if s.audio_path else None,
                 modalities, self.frames) for s in self.samples[lo:hi]]
        decoded = list(pool.map(decode, jobs)) if pool is not None else [decode(j) for j in jobs]
        ok = [i for i, (inputs, _) in enumerate(decoded) if inputs is not None]
        reasons = np.asarray([reason or "" for _, reason in decoded], dtype=str)
        reasons = reasons.astype(object)
        non_finite = np.zeros(hi - lo, dtype=bool)
        for modality, enc in self.encoders.items():
            feats = np.zeros((hi - lo, enc.dim), dtype=np.float32)
            for start in range(0, len(ok), batch_size):
                rows = ok[start:start + batch_size]
                feats[rows] = check_encoded(enc, enc.encode_batch([decoded[i][0][modality] for i in rows]), len(rows))
            bad = np.zeros(hi - lo, dtype=bool)
            bad[ok] = ~np.isfinite(feats[ok]).all(axis=1)  # such a video fails, like one that cannot be decoded
            reasons[bad & ~non_finite] = f"encoder {enc.encoder_id!r} gave non-finite {modality} features"
            non_finite |= bad
            group[f"features/{modality}"][lo:hi] = np.where(bad[:, None], 0.0, feats)
        group["reasons"][lo:hi] = reasons.astype(str)
        status = np.full(hi - lo, FAILED, dtype=np.int8)
        status[ok] = DONE
        status[non_finite] = FAILED
        for modality in self.encoders:  # written last: a chunk counts as done only once its rows are in
            group[f"status/{modality}"][lo:hi] = status
        return int((status == FAILED).sum())

    # ------------------------------------------------------------------ the end
    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[bool]:
        """True for the one process that writes the finished dataset (`locks.exclusive` on the
        working folder's `write.lock`). On an object store always True: each writer commits its
        own version (see the module's doc)."""
        if self.path is None:
            yield True
            return
        with exclusive(self.path / "write.lock") as holder:
            yield holder is None

    def finished(self, group) -> bool:
        return all((st != PENDING).all() for st in self.status(group).values())

    def bundle(self, group, source: str) -> tuple[FeatureBundle, dict[str, str]]:
        """The dataset as it goes into the store: the videos that decoded; failures by id."""
        status = self.status(group)
        ok = np.logical_and.reduce([st == DONE for st in status.values()])
        ids = np.array(group["videos/ids"][:].tolist(), dtype=str)
        reasons = np.array(group["reasons"][:].tolist(), dtype=str)
        failures = {ids[i]: reasons[i] or "failed" for i in np.flatnonzero(~ok)}
        labels = np.asarray(group["videos/labels"][:], dtype=np.int64)[ok]
        d = self.description
        bundle = FeatureBundle(
            classes=list(self.classes), prompt_names=list(d.get("prompt_names", self.classes)), ids=ids[ok].tolist(),
            labels=labels, features={m: np.asarray(group[f"features/{m}"][:])[ok] for m in self.encoders},
            label_embeddings={}, partition=np.asarray(d["partition"], dtype=np.int8)[ok],
            class_splits=d.get("class_splits", {}),
            provenance={"source": source, "extraction": self.settings, "failed": failures,
                        "fingerprint": f"extract-{self.settings['ids']}-"
                                       + hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
                                       + f"-{len(failures)}"},
        )
        return bundle, failures


def _comparable(recorded: dict | None) -> dict | None:
    """A working group's recorded settings, less what earlier versions recorded but never used:
    the CLIP encoder's `frames` parameter (the frames per video were always `--frames`), so an
    extraction started before it went resumes instead of being refused."""
    if not isinstance(recorded, dict):
        return recorded
    out = json.loads(json.dumps(recorded))
    for encoder in out.get("encoders", {}).values():
        if encoder.get("id") == "clip":
            encoder.get("params", {}).pop("frames", None)
    return out
