"""`clipclap extract`: features of every video of a dataset, resumable and shardable.

Work happens in a working group `<store>/.extract-<dataset>/` beside the datasets, which the
store lays out and writes (`store/extraction_group.py`): the videos' ids and labels, each
modality's features and each row's status (pending, done, failed), and why a video failed.

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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipclap_cli.api import FeatureBundle, Sample
from clipclap_cli.errors import ClipclapError, StoreError
from clipclap_cli.extract.media import CLIP_SECONDS, SAMPLE_RATE
from clipclap_cli.frame_recipes import DEFAULT as DEFAULT_RECIPE
from clipclap_cli.frame_recipes import get_recipe
from clipclap_cli.plugins.contracts import check_encoded
from clipclap_cli.plugins.encoder_records import LOCATION_PARAMS
from clipclap_cli.processes import die_with, worker_context
from clipclap_cli.store.extraction_group import DONE, FAILED, PENDING, Blueprint, ExtractionGroup, Rows
from clipclap_cli.store.feature_store import FeatureStore


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


def decode(job: tuple[str, str | None, str | None, tuple[str, ...], int, str]):
    """Worker: decode what each encoder needs from one video; (inputs by modality) or an error reason."""
    from clipclap_cli.extract.media import MediaError, audio_clip, recipe_frames
    from clipclap_cli.frame_recipes import get_recipe

    _, video_path, audio_path, modalities, frames, recipe = job
    if video_path is None and audio_path is None:
        return None, "video file not found"
    try:
        out = {}
        if "video" in modalities:
            out["video"] = recipe_frames(Path(video_path), get_recipe(recipe), frames)
        if "audio" in modalities:
            out["audio"] = audio_clip(Path(audio_path or video_path))
        return out, None
    except MediaError as e:
        return None, str(e)
    except Exception as e:  # any decoder failure is a per-video failure, recorded
        return None, f"{type(e).__name__}: {str(e)[:120]}"


AUDIO_SETTINGS = {"sample_rate": SAMPLE_RATE, "seconds": CLIP_SECONDS, "mono": "mean of channels",
                  "fit": "centre crop or zero pad at the end"}
"How `media.audio_clip` takes a video's audio, as the features record it"


def _worker_ready() -> bool:
    """Worker: nothing but having started (`Decoder._check_workers_start`)."""
    return True


class Decoder:
    """Decoding in worker processes (or in this one, with no workers). A worker that dies (a
    crash in the decoder, an out-of-memory kill) fails the video it held, named; the rest of
    the batch is decoded again, one video per fresh worker until the culprit is found, and the
    run goes on. Workers die with the process that started them, even when it is killed."""

    def __init__(self, workers: int):
        self.workers, self._pool = workers, None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=worker_context(),
                                             initializer=die_with, initargs=(os.getpid(),))
        return self._pool

    def decode(self, jobs: list) -> list:
        if self.workers <= 0:
            return [decode(job) for job in jobs]
        try:
            return list(self._executor().map(decode, jobs))
        except BrokenProcessPool:
            self._reset()
        self._check_workers_start()
        out = []
        for job in jobs:  # one at a time, to name the video that kills its worker
            try:
                out.append(self._executor().submit(decode, job).result())
            except BrokenProcessPool:
                self._reset()
                out.append((None, "the decoder crashed on this video (its worker process died)"))
        return out

    def _check_workers_start(self) -> None:
        """After a broken pool: a worker that cannot even start (Python's multiprocessing runs the
        main script again in it, and a script without a main guard then fails there) would fail
        every video one by one as a 'crash'; this says why at once instead."""
        try:
            self._executor().submit(_worker_ready).result()
        except BrokenProcessPool:
            self._reset()
            raise ClipclapError(
                "the decoding worker processes die as they start: a script that decodes with workers "
                "must run its work under `if __name__ == \"__main__\":` (Python's multiprocessing runs the "
                "main script again in each worker), or decode in this process (workers=0)") from None

    def _reset(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._pool = None


def video_jobs(samples: list[Sample], encoders: dict, frames: int, recipe: str) -> list[tuple]:
    """What `decode` takes for each sample: its files, the modalities the encoders need, the
    frames per video and the frame recipe."""
    modalities = tuple(sorted(encoders))
    return [(s.id, str(s.video_path) if s.video_path else None, str(s.audio_path) if s.audio_path else None,
             modalities, frames, recipe) for s in samples]


def encode_videos(decoder: Decoder, jobs: list[tuple], encoders: dict,
                  batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Decode the jobs' videos and encode those that decoded, each encoder in batches of
    `batch_size`: ({modality: (n, dim) float32, zeros where failed}, done (n,) bool, reasons (n,),
    "" where done). A video whose features are not finite fails like one that does not decode.
    The one decode-and-encode of videos: `extract` stores its rows, `predict --videos` uses them."""
    decoded = decoder.decode(jobs)
    ok = [i for i, (inputs, _) in enumerate(decoded) if inputs is not None]
    reasons = [reason or "" for _, reason in decoded]
    non_finite = np.zeros(len(jobs), dtype=bool)
    features = {}
    for modality, enc in encoders.items():
        mine = np.zeros((len(jobs), enc.dim), dtype=np.float32)
        for start in range(0, len(ok), batch_size):
            batch = ok[start:start + batch_size]
            mine[batch] = check_encoded(enc, enc.encode_batch([decoded[i][0][modality] for i in batch]), len(batch))
        bad = np.zeros(len(jobs), dtype=bool)
        bad[ok] = ~np.isfinite(mine[ok]).all(axis=1)  # such a video fails, like one that cannot be decoded
        for i in np.flatnonzero(bad & ~non_finite):
            reasons[i] = f"encoder {enc.encoder_id!r} gave non-finite {modality} features"
        non_finite |= bad
        features[modality] = np.where(bad[:, None], np.float32(0), mine)
    done = np.zeros(len(jobs), dtype=bool)
    done[ok] = True
    return features, done & ~non_finite, reasons


class Extraction:
    """One dataset's extraction into `store` with `encoders` ({modality: encoder})."""

    def __init__(self, store: FeatureStore, dataset: str, samples: list[Sample], encoders: dict,
                 chunk: int = 64, frames: int = 1, description: dict | None = None, recipe: str = DEFAULT_RECIPE):
        self.store, self.dataset, self.samples, self.encoders = store, dataset, samples, encoders
        self.chunk, self.frames, self.recipe = chunk, frames, recipe
        self.reuse_stored = True
        "Start from the store's dataset of this name where it was extracted the same way (`prefill`)"
        self.group = ExtractionGroup(store, dataset)
        self.path = self.group.path  # a folder store's working folder
        self.description = description or {
            "classes": sorted({s.label for s in samples}), "partition": [-1] * len(samples), "class_splits": {}}
        self.classes = list(self.description["classes"])
        self.settings = {
            "ids": hashlib.sha256("\n".join(f"{s.id}\t{s.label}" for s in samples).encode()).hexdigest(),
            "encoders": {m: {"id": e.encoder_id, "dim": e.dim, "params": {k: str(v) for k, v in vars(e.params).items()
                                                                        if k != "device"},
                             "weights": weights_identity(e.provenance())}
                         for m, e in sorted(encoders.items())},
            "chunk": chunk, "frames": frames,
            "frame_recipe": get_recipe(recipe).as_dict(),
            "audio": AUDIO_SETTINGS,
        }

    # ------------------------------------------------------------------ working group
    def open(self, shard: Shard = Shard(), wait_s: float = 600.0, on_wait: Callable[[], None] | None = None,
             _again: bool = False) -> ExtractionGroup:
        """Create the working group, or check an existing one's settings (see the module's doc).
        On an object store, shards other than 0 wait for shard 0 to create it (`on_wait` is
        called once when they start waiting)."""
        group = self.group
        self.store.open_for_writing()  # a clipclap store, or a new one: never a folder of the user's
        if not group.ready():
            if group.renamed_into_place or shard.index == 0:
                group.create(self._blueprint)
            else:
                deadline = time.monotonic() + wait_s
                if on_wait is not None:
                    on_wait()
                while not group.ready():
                    if time.monotonic() > deadline:
                        raise StoreError(f"shard 0 has not created the working group {group} "
                                         f"in {wait_s:.0f} s; start shard 0 (it creates it on object stores)")
                    time.sleep(1.0)
        group.open()
        if not _again and self._stale():  # a finished extraction whose dataset is written: leftovers
            group.remove()
            return self.open(shard, wait_s, on_wait, _again=True)
        if _comparable(group.settings) != json.loads(json.dumps(self.settings)):
            raise StoreError(f"an extraction of {self.dataset!r} with other settings (videos, encoders or their "
                             f"parameters) is in {group}; rerun it as it was, or remove that folder "
                             "to start over")
        return group

    def _blueprint(self) -> Blueprint:
        """What the new working group holds, settings last (`ExtractionGroup.create` calls it)."""
        return Blueprint(ids=[s.id for s in self.samples],
                         labels=np.asarray([self.classes.index(s.label) for s in self.samples], dtype=np.int32),
                         dims={modality: enc.dim for modality, enc in self.encoders.items()}, chunk=self.chunk,
                         attrs={"settings": self.settings, "classes": self.classes}, prefill=self._prefill())

    def _prefill(self) -> Rows | None:
        """Rows the store's dataset already holds, extracted the same way (`refuse_other_source`
        has compared the settings): their features are taken, and the videos that failed then
        stay failed (`--retry-failed` tries them again). So adding videos to a folder and
        running `extract` again extracts only the new ones."""
        if not self.reuse_stored or not self.store.has_dataset(self.dataset):
            return None
        info = self.store.info(self.dataset)
        if not isinstance(info.get("provenance", {}).get("extraction"), dict):
            return None  # imported features are not this extraction's to take
        stored_ids, _, _ = self.store.read_videos(self.dataset)
        where = {str(v): i for i, v in enumerate(stored_ids)}
        ids = [s.id for s in self.samples]
        rows = np.asarray([i for i, v in enumerate(ids) if v in where], dtype=np.int64)
        failed = info["provenance"].get("failed", {})
        lost = np.asarray([i for i, v in enumerate(ids) if v in failed], dtype=np.int64)
        reasons = np.asarray([""] * len(ids), dtype=object)
        reasons[lost] = [failed[ids[i]] for i in lost]
        out = Rows(features={}, status={}, reasons=reasons)
        for modality, enc in self.encoders.items():
            features = np.zeros((len(ids), enc.dim), dtype=np.float32)
            if len(rows):
                features[rows] = self.store.read_features(self.dataset, modality)[[where[ids[i]] for i in rows]]
            status = np.full(len(ids), PENDING, dtype=np.int8)
            status[rows], status[lost] = DONE, FAILED
            out.features[modality], out.status[modality] = features, status
        return out

    def _stale(self) -> bool:
        """Whether the working group is a finished extraction whose dataset the store holds already."""
        recorded = self.group.settings
        if recorded is None or not self.store.has_dataset(self.dataset):
            return False
        done = all((st != PENDING).all() for st in self.group.status(recorded.get("encoders", {})).values())
        extraction = self.store.info(self.dataset).get("provenance", {}).get("extraction")
        return done and json.loads(json.dumps(extraction)) == json.loads(json.dumps(recorded))

    def remove(self) -> None:
        """Remove the working group (after its dataset is written)."""
        self.group.remove()

    def status(self) -> dict[str, np.ndarray]:
        """Each encoder's status of every row."""
        return self.group.status(self.encoders)

    def status_to_come(self) -> tuple[dict[str, np.ndarray], str]:
        """Each encoder's status of every row as `run` would find it, read and never written
        (`extract --dry-run`), and where it comes from: the working group (refused, as `open`
        refuses it, when made with other settings), else what the store's dataset holds, else
        all pending."""
        if self.group.ready() and not self._stale():
            if _comparable(self.group.settings) != json.loads(json.dumps(self.settings)):
                raise StoreError(f"an extraction of {self.dataset!r} with other settings (videos, encoders or their "
                                 f"parameters) is in {self.group}; rerun it as it was, or remove that folder "
                                 "to start over")
            return self.status(), f"the working group {self.group}"
        prefill = self._prefill() if self.store.location.exists() else None
        if prefill is not None:
            return prefill.status, f"the store's dataset {self.dataset!r}"
        return {m: np.full(len(self.samples), PENDING, dtype=np.int8) for m in self.encoders}, "no earlier extraction"

    def retry_failed(self) -> int:
        """Put the failed rows back to pending; how many videos had failed (in any encoder)."""
        status = self.status()
        count = max((int((st == FAILED).sum()) for st in status.values()), default=0)
        self.group.write_status({m: np.where(st == FAILED, PENDING, st) for m, st in status.items()})
        return count

    # ------------------------------------------------------------------ the work
    def run(self, shard: Shard, workers: int, batch_size: int,
            on_progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Extract this shard's pending videos (those not done or failed: a rerun, or
        `--retry-failed`, does only those), chunk by chunk. A decoding worker that dies (a
        crash, an out-of-memory kill) fails the video it was decoding, and the run goes on.
        `on_progress(done, total)` before the first chunk (0 done: the encoders load with it) and
        after each chunk."""
        self.open()
        n = len(self.samples)
        chunks = shard.chunks((n + self.chunk - 1) // self.chunk)
        pending = np.logical_or.reduce([st == PENDING for st in self.status().values()])
        todo = [c for c in chunks if pending[c * self.chunk:(c + 1) * self.chunk].any()]
        total = int(sum(pending[c * self.chunk:(c + 1) * self.chunk].sum() for c in todo))
        counts = {"videos": 0, "failed": 0}
        if on_progress is not None and todo:
            on_progress(0, total)
        decoder = Decoder(workers)
        try:
            for c in todo:
                videos, failed = self._chunk(c, decoder, batch_size)
                counts["videos"] += videos
                counts["failed"] += failed
                if on_progress is not None:
                    on_progress(counts["videos"], total)
        finally:
            decoder.close()
        return counts

    def _chunk(self, c: int, decoder: Decoder, batch_size: int) -> tuple[int, int]:
        """Decode and encode the pending rows of chunk `c`; the others keep what they hold.
        Returns (videos done now, of which failed)."""
        lo, hi = c * self.chunk, min((c + 1) * self.chunk, len(self.samples))
        block = self.group.read(self.encoders, lo, hi)
        rows = np.flatnonzero(np.logical_or.reduce([st == PENDING for st in block.status.values()]))
        jobs = video_jobs([self.samples[lo + i] for i in rows], self.encoders, self.frames, self.recipe)
        features, done, why = encode_videos(decoder, jobs, self.encoders, batch_size)
        reasons = block.reasons
        reasons[rows] = why
        for modality in self.encoders:
            block.features[modality][rows] = features[modality]
        status = block.status[sorted(self.encoders)[0]].copy()
        status[rows] = np.where(done, DONE, FAILED)
        self.group.write(lo, Rows(block.features, {m: status for m in self.encoders}, reasons))  # statuses last
        return len(rows), int((~done).sum())

    # ------------------------------------------------------------------ the end
    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[bool]:
        """True for the one process that writes the finished dataset. On an object store always
        True: each writer commits its own version (see the module's doc)."""
        with self.group.committer() as mine:
            yield mine

    def finished(self) -> bool:
        return all((st != PENDING).all() for st in self.status().values())

    def bundle(self, source: str) -> tuple[FeatureBundle, dict[str, str]]:
        """The dataset as it goes into the store: the videos that decoded; failures by id."""
        block = self.group.read(self.encoders)
        ok = np.logical_and.reduce([st == DONE for st in block.status.values()])
        ids, labels = self.group.videos()
        reasons = np.array(block.reasons.tolist(), dtype=str)
        failures = {ids[i]: reasons[i] or "failed" for i in np.flatnonzero(~ok)}
        d = self.description
        bundle = FeatureBundle(
            classes=list(self.classes), prompt_names=list(d.get("prompt_names", self.classes)), ids=ids[ok].tolist(),
            labels=labels[ok], features={m: block.features[m][ok] for m in self.encoders},
            label_embeddings={}, partition=np.asarray(d["partition"], dtype=np.int8)[ok],
            class_splits=d.get("class_splits", {}),
            provenance={"source": source, "extraction": self.settings, "failed": failures,
                        "features": self.feature_provenance(),
                        "fingerprint": f"extract-{self.settings['ids']}-"
                                       + hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
                                       + f"-{len(failures)}"},
        )
        return bundle, failures

    def feature_provenance(self) -> dict[str, dict]:
        """Per feature array: the encoder, its parameters (less the device) and weights, library
        versions, and how its input was taken (the frame recipe for video, the audio settings
        for audio): what `predict --videos` rebuilds the encoders from."""
        out = {}
        for modality, enc in self.encoders.items():
            how = ({"frame_recipe": self.settings["frame_recipe"], "frames": self.frames} if modality == "video"
                   else {"audio": self.settings["audio"]})
            out[modality] = {"encoder": enc.encoder_id, **enc.provenance(), **how,
                             "params": self.settings["encoders"][modality]["params"]}
        return out

    def refuse_other_source(self, replace: bool) -> None:
        """The store's dataset of this name, extracted with another frame recipe, encoder or
        weights: refused (features of two sources never share an array) unless `replace`."""
        if replace or not self.store.has_dataset(self.dataset):
            return
        before = self.store.info(self.dataset).get("provenance", {}).get("extraction")
        if not isinstance(before, dict):
            return  # imported (released) features: replacing them is store_bundle's to judge
        ours = self.settings
        differs = [what for what, a, b in (
            ("frame recipe", (before.get("frame_recipe") or {}).get("name", "of clipclap 0.2 (before recipes)"),
             ours["frame_recipe"]["name"]),
            ("frames per video", before.get("frames", 1), ours["frames"]),
            *((f"{m} encoder", (before.get("encoders", {}).get(m) or {}).get("id"), e["id"])
              for m, e in ours["encoders"].items()),
            *((f"{m} weights", (before.get("encoders", {}).get(m) or {}).get("weights"), e["weights"])
              for m, e in ours["encoders"].items()
              if (before.get("encoders", {}).get(m) or {}).get("weights") is not None),
            *((f"{m} encoder parameters", _settings_of((before.get("encoders", {}).get(m) or {}).get("params", {})),
               _settings_of(e["params"])) for m, e in ours["encoders"].items())) if a != b]
        if differs:
            raise StoreError(f"dataset {self.dataset!r} in {self.store} holds features of another "
                             f"{', '.join(differs)}; features of two sources never share an array: rerun with the "
                             "settings it was extracted with, or pass --replace to replace them")


def _settings_of(params: dict) -> dict:
    """An encoder's parameters less where its files lie (their contents are in `weights`)."""
    return {k: v for k, v in params.items() if k not in LOCATION_PARAMS}


def weights_identity(provenance: dict) -> dict:
    """What identifies an encoder's weights (model, sha256, random or not) in its provenance,
    not where they lie."""
    return {k: provenance[k] for k in ("model", "pretrained", "weights_sha256", "random_weights") if k in provenance}


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
