"""`clipclap extract` on generated videos with the tiny encoders: shapes, norms, failures,
determinism, resume after kill -9, and sharding across processes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from clipclap_cli.api import PARTITIONS, Sample
from clipclap_cli.errors import StoreError
from clipclap_cli.store.feature_store import FeatureStore
from helpers import register_plugin, tree_digest
from media_files import write_video
from prestarted import clipclap, clipclap_run

# one pytest-xdist worker runs them all: they share the module's extracted reference store
pytestmark = pytest.mark.xdist_group("extract")
TINY = ("-e", "clip:model=clipclap-tiny-clip", "-e", "clap:size=tiny")
DATASETS = """
[datasets.mine]
display_name = "Generated videos"
kind = "video-folder"
split = "drawn"
dims = { video = 32, audio = 32, clip = 32, clap = 32 }
"""


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """3 classes x 3 clips of 1-2 s (moving colours, tones), plus a corrupt, a silent and an empty file."""
    root = tmp_path_factory.mktemp("videos")
    for ci, cls in enumerate(["Archery", "Drumming", "Fencing"]):
        (root / cls).mkdir()
        for k in range(3):
            write_video(root / cls / f"clip{k}.mp4", seconds=1 + 0.5 * k, channel=ci, freq=300 + 200 * ci + 40 * k)
    (root / "Archery" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 40)
    write_video(root / "Drumming" / "silent.mp4", audio=False)
    write_video(root / "Fencing" / "empty.mp4", frames=False)
    datasets = root.parent / "datasets.toml"
    datasets.write_text(DATASETS)
    return root, datasets


def _extract(videos, store, *extra, runner=None):
    root, datasets = videos
    args = ["extract", "mine", "--videos", str(root), "--datasets", str(datasets), "--store", str(store), *TINY,
            "--chunk", "2", *extra]
    if runner is not None:
        return runner(*args)
    return clipclap_run(args)


def _content(store):
    fs = FeatureStore(store)
    ids, labels, _ = fs.read_videos("mine")
    info = fs.info("mine")
    return {"ids": ids.tolist(), "labels": labels.tolist(), "classes": info["classes"],
            "failed": info["provenance"]["failed"],
            "video": fs.read_features("mine", "video"), "audio": fs.read_features("mine", "audio")}


def _same(a, b):
    assert {k: v for k, v in a.items() if k not in ("video", "audio")} == \
           {k: v for k, v in b.items() if k not in ("video", "audio")}
    assert np.array_equal(a["video"], b["video"]) and np.array_equal(a["audio"], b["audio"])


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    store = tmp_path_factory.mktemp("ref") / "s.zarr"
    r = _extract(videos, store, "--workers", "0")
    assert r.returncode == 0, r.stderr
    return store, r


def test_features_failures_and_norms(reference):
    store, r = reference
    c = _content(store)
    assert c["video"].shape == (9, 32) and c["audio"].shape == (9, 32)
    assert np.allclose(np.linalg.norm(c["video"], axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(c["audio"], axis=1), 1, atol=1e-5)
    assert c["classes"] == ["Archery", "Drumming", "Fencing"] and c["labels"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert set(c["failed"]) == {"Archery/corrupt", "Drumming/silent", "Fencing/empty"}
    assert "unreadable container" in c["failed"]["Archery/corrupt"]
    assert c["failed"]["Drumming/silent"] == "no audio stream"
    assert c["failed"]["Fencing/empty"].startswith("no video")
    assert "3 videos could not be read" in r.stdout
    assert not np.allclose(c["video"][0], c["video"][3])  # red and green clips differ


def test_an_extracted_dataset_says_what_it_still_needs(videos, reference, cli):
    """A dataset extracted from a folder has no label embeddings, prompts, split or class-split lists:
    `datasets show`, `train`, `embed` and `split` each say what to run next, and a split too small to hold out
    a video per partition says why."""
    store, _ = reference
    before = tree_digest(store)
    where = ("--store", store, "--datasets", videos[1])
    shown = cli("datasets", "show", "mine", *where).stdout
    assert "label embeddings: none yet: run `clipclap embed mine --encoder clip` (and clap)" in shown
    assert "no split yet: run `clipclap split mine --from DIR`, or draw one with `--seen N --unseen M`" in shown
    r = cli("train", "mine", *where)
    assert r.exit_code == 1 and r.stderr.strip().endswith(
        "(run `clipclap split mine --split drawn --from DIR`, or draw one with `--seen N --unseen M`)")
    r = cli("embed", "mine", "-e", "model=clipclap-tiny-clip", *where)  # its entry names no prompts file
    assert r.exit_code == 1 and "names no prompts file: pass --prompts FILE, or set `prompts`" in r.stderr
    r = cli("split", "mine", "--seen", 2, "--unseen", 1, "--split", "drawn", *where)
    assert r.exit_code == 1 and r.stderr.strip() == (
        "Error: the drawn split leaves stage_1_val_seen without videos: it takes 10% of each seen class's "
        "videos, rounded, which is none for the largest seen class drawn (3 videos); extract more videos per class")
    assert tree_digest(store) == before


def test_two_runs_are_identical(videos, reference, tmp_path):
    assert _extract(videos, tmp_path / "s.zarr", "--workers", "2").returncode == 0
    _same(_content(tmp_path / "s.zarr"), _content(reference[0]))


def _one_by_one(videos, store) -> list[str]:
    """The command of an extraction into `store` that a kill can stop after its first chunk (a
    video per batch)."""
    root, datasets = videos
    return ["extract", "mine", "--videos", str(root), "--datasets", str(datasets), "--store", str(store), *TINY,
            "--chunk", "2", "--workers", "0", "--batch-size", "1"]


@pytest.fixture(scope="module")
def uninterrupted(videos, tmp_path_factory) -> Path:
    """The store of `_one_by_one`'s extraction run without a stop, what the killed ones must end as."""
    store = tmp_path_factory.mktemp("uninterrupted") / "s.zarr"
    assert clipclap_run(_one_by_one(videos, store)).returncode == 0
    return store


def _killed_after_its_first_chunk(videos, store) -> list[str]:
    """Start an extraction, kill -9 it once its first chunk is done; returns its command."""
    args = _one_by_one(videos, store)
    proc = clipclap(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_chunk = store / ".extract-mine" / "status" / "video" / "c" / "0"
    deadline = time.time() + 120
    while time.time() < deadline and not first_chunk.exists() and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (store / "mine").exists(), "the run finished before it could be killed"
    return args


def test_killed_run_resumes_to_the_same_store(videos, uninterrupted, tmp_path):
    store = tmp_path / "s.zarr"
    args = _killed_after_its_first_chunk(videos, store)
    done = clipclap_run(args)
    assert done.returncode == 0, done.stderr
    _same(_content(store), _content(uninterrupted))


def test_extraction_started_with_the_clip_frames_parameter_resumes(videos, uninterrupted, tmp_path, cli):
    """The CLIP encoder's `frames` parameter did nothing (frames per video are `--frames`) and is
    gone: `-e clip:frames=N` is refused, and an extraction whose working group recorded it (one
    started by an earlier clipclap) resumes to the same store instead of being refused."""
    import zarr

    root, datasets = videos
    r = cli("extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "t.zarr", *TINY,
            "-e", "clip:frames=4")
    assert r.exit_code == 1 and "unknown parameter 'frames'" in r.stderr and not (tmp_path / "t.zarr").exists()
    store = tmp_path / "s.zarr"
    args = _killed_after_its_first_chunk(videos, store)
    group = zarr.open_group(store / ".extract-mine", mode="r+")
    settings = group.attrs["settings"]
    settings["encoders"]["video"]["params"]["frames"] = "1"  # as earlier versions recorded it
    group.attrs["settings"] = settings
    done = clipclap_run(args)
    assert done.returncode == 0, done.stderr
    _same(_content(store), _content(uninterrupted))


def test_two_shards_give_the_same_store_as_one_process(videos, reference, tmp_path):
    store = tmp_path / "s.zarr"
    base = ["extract", "mine", "--videos", str(videos[0]), "--datasets", str(videos[1]), "--store", str(store), *TINY,
            "--chunk", "2", "--workers", "0"]
    # shard 0 by --shard, shard 1 by the RANK / WORLD_SIZE that torchrun sets
    procs = [clipclap([*base, "--shard", "0/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE),
             clipclap(base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      env=dict(os.environ, RANK="1", WORLD_SIZE="2"))]
    stderr = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], stderr
    # a shard checks the others' status only after writing its own, so whichever finishes last sees
    # every video done and writes the dataset: no rerun is needed, however the two interleave
    assert FeatureStore(store).datasets() == ["mine"], stderr
    _same(_content(store), _content(reference[0]))


def test_torchrun_ranks_give_the_same_store_as_one_process(videos, reference, tmp_path):
    """The README's torchrun launch, for real (standalone rendezvous on this host, 2 ranks)."""
    store = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "clipclap_cli", "extract", "mine", "--videos", str(videos[0]), "--datasets", str(videos[1]),
           "--store", str(store), *TINY, "--chunk", "2", "--workers", "0"]
    # torchrun would give each rank one thread; the reference store was made with the default count,
    # and a GEMM's float rounding depends on how it is split across threads
    threads = str(torch.get_num_threads())
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=threads))
    assert done.returncode == 0, done.stderr
    assert "other shards still have videos to do" in done.stderr or "another process is writing" in done.stderr
    _same(_content(store), _content(reference[0]))


def test_retry_failed_and_bad_input(videos, reference, tmp_path, cli):
    root, datasets = videos
    r = _extract(videos, tmp_path / "s.zarr", "--workers", "0", runner=cli)
    assert r.exit_code == 0
    r = _extract(videos, tmp_path / "s.zarr", "--workers", "0", "--retry-failed", runner=cli)
    assert r.exit_code == 0 and "retrying 3 failed videos" in r.stderr
    assert "unchanged" in r.stderr  # the same files fail again: the same dataset
    r = cli("extract", "mine", "--videos", tmp_path / "nowhere", "--datasets", datasets,
            "--store", tmp_path / "t.zarr", *TINY)
    assert r.exit_code == 1 and "no such folder of videos" in r.stderr
    r = cli("extract", "mine", "--datasets", datasets, "--store", tmp_path / "t.zarr", *TINY)
    assert r.exit_code == 1 and "dataset 'mine' names no videos folder: pass --videos DIR" in r.stderr
    r = cli("extract", "demo", "--store", tmp_path / "t.zarr", *TINY)  # a format without videos says so
    assert r.exit_code == 1 and "dataset kind 'synthetic' holds no videos to extract features from" in r.stderr
    r = cli("extract", "mine", "--videos", root, "--split-dir", root, "--datasets", datasets,
            "--store", tmp_path / "t.zarr", *TINY)
    assert r.exit_code == 1 and "(video-folder) takes its classes from the class folders, not from --split-dir" \
        in r.stderr
    r = cli("extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "t.zarr")
    assert r.exit_code == 1 and "expects 32-d video features" in r.stderr and "gives 512" in r.stderr
    full = tmp_path / "full.toml"  # the published sizes, but no checkpoint given: refused before any work
    full.write_text(DATASETS.replace("video = 32, audio = 32,", "video = 512, audio = 1024,"))
    r = cli("extract", "mine", "--videos", root, "--datasets", full, "--store", tmp_path / "t.zarr")
    assert r.exit_code == 1 and "CLIP ViT-B-32-quickgelu has no weights" in r.stderr
    r = cli("extract", "mine", "--videos", root, "--datasets", full, "--store", tmp_path / "t.zarr",
            "-e", "clip:random_weights=true")
    assert r.exit_code == 1 and "CLAP has no weights" in r.stderr
    r = cli("extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "t.zarr", *TINY,
            "--shard", "2/2")
    assert r.exit_code == 1 and "--shard '2/2'" in r.stderr
    for option, value in (("--frames", "0"), ("--batch-size", "0"), ("--chunk", "0"), ("--workers", "-1")):
        r = cli("extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "t.zarr", *TINY,
                option, value)
        assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.stderr, (option, r.stderr)
    assert not (tmp_path / "t.zarr").exists()


def test_a_plugin_s_encoders_extract_through_the_cli(videos, cli, pm, tmp_path):
    """Encoders registered by a (here in-process) plugin are what `extract --video-encoder
    --audio-encoder` run: a mean-colour video encoder and an RMS audio encoder, checked against
    how the clips were made (class c ramps colour channel c from 0 to 255, so its middle frame
    holds ~127 there; a tone of RMS ~0.395 for 1-2 s, zero-padded to 10 s)."""
    from dataclasses import dataclass

    from clipclap_cli import Encoder

    @dataclass(frozen=True)
    class NoParams:
        pass

    class MeanColour(Encoder):
        encoder_id, modality, dim, Params = "mean-colour", "video", 3, NoParams

        def encode_batch(self, items):
            return np.stack([np.asarray(frames, np.float32).mean(axis=(0, 1, 2)) / 255 for frames in items])

    class Rms(MeanColour):
        encoder_id, modality, dim = "rms", "audio", 1

        def encode_batch(self, items):
            rms = [np.sqrt(np.mean(np.square(wave, dtype=np.float64))) for wave in items]
            return np.asarray(rms, np.float32)[:, None]

    register_plugin(pm, "my-encoders", encoders=[MeanColour(), Rms()])
    root, _ = videos
    datasets = tmp_path / "datasets.toml"
    datasets.write_text(DATASETS.replace("video = 32, audio = 32,", "video = 3, audio = 1,"))
    r = cli("extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "s.zarr",
            "--video-encoder", "mean-colour", "--audio-encoder", "rms")
    assert r.exit_code == 0, r
    fs = FeatureStore(tmp_path / "s.zarr")
    ids, labels, _ = fs.read_videos("mine")
    video, audio = fs.read_features("mine", "video"), fs.read_features("mine", "audio")
    clips = [i for i, name in enumerate(ids) if "/clip" in name]
    assert len(clips) == 9  # the corrupt, silent and empty files failed
    for i in clips:
        channel, seconds = labels[i], 1 + 0.5 * int(ids[i][-1])  # class c ramps channel c; clipK lasts 1 + K/2 s
        assert abs(video[i, channel] - 0.5) < 0.1 and np.delete(video[i], channel).max() < 0.1, (ids[i], video[i])
        tone = np.sqrt(0.5 ** 2 / 2 + 0.25 ** 2 / 2)  # mono = (sin f + 0.5 sin 2f) / 2
        assert audio[i, 0] == pytest.approx(tone * np.sqrt(seconds / 10), rel=0.05), ids[i]


BROKEN_OUTPUT = {
    "one vector for the batch": ("encode_batch", lambda self, items: np.zeros(self.dim, np.float32),
                                 "came: a float32 array of shape (3,)"),
    "a sample listed twice": ("samples", lambda self, videos, **o: [Sample("a", "x"), Sample("a", "x")],
                              "came: the id 'a' twice"),
    "labels outside the classes": ("describe_samples", lambda self, samples, **o: {
        "classes": ["x"], "prompt_names": ["x"], "partition": [-1] * len(samples), "class_splits": {}},
        "came: labels outside the classes"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_OUTPUT))
def test_malformed_plugin_output_stops_extraction_naming_the_plugin(videos, cli, pm, tmp_path, case):
    """An encoder whose batch is one vector would broadcast into every row, a format whose samples
    repeat an id or whose classes miss a label would mislabel videos: each stops `extract` with
    three lines naming the plugin, before anything is written to the store."""
    from dataclasses import dataclass

    from clipclap_cli import Encoder
    from clipclap_plugins.datasets_videos import VideoFolder

    method, broken, came = BROKEN_OUTPUT[case]

    class Colour(Encoder):
        encoder_id, modality, dim = "flat-colour", "video", 3

        @dataclass(frozen=True)
        class Params:
            pass

        def encode_batch(self, items):
            return np.stack([np.asarray(f, np.float32).mean(axis=(0, 1, 2)) for f in items])

    if method == "encode_batch":
        Colour.encode_batch = broken
        kind = VideoFolder
    else:
        kind = type("Folder", (VideoFolder,), {"kind": "broken-folder", method: broken})

    register_plugin(pm, "broken-output", encoders=[Colour()], dataset_kinds=[kind] if kind is not VideoFolder else [])
    root, _ = videos
    datasets = tmp_path / "datasets.toml"
    datasets.write_text(DATASETS.replace("video = 32, audio = 32,", "video = 3, audio = 16,")
                        .replace('"video-folder"', f'"{kind.kind}"'))
    r = cli("extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "s.zarr",
            "--video-encoder", "flat-colour", "--audio-encoder", "random-projection", "--workers", "0")
    error = r.stderr[r.stderr.index("Error:"):].strip().splitlines()
    assert r.exit_code == 1 and len(error) == 3 and "broke its contract" in error[0], r.stderr
    assert ("encoder 'flat-colour'" if method == "encode_batch" else "dataset kind 'broken-folder'") in error[0]
    assert came in error[2], error
    assert not FeatureStore(tmp_path / "s.zarr").datasets() if (tmp_path / "s.zarr").exists() else True


def test_devices_this_machine_lacks_are_refused_before_any_work(videos, cli, demo_store, tmp_path):
    """A device torch cannot run on here (cuda:99: no machine of ours has a hundred GPUs) is one
    line naming how it was given, before extract creates its working group and before train or
    embed write anything; a name that is no device is one line too."""
    from helpers import tree_digest

    root, datasets = videos
    before = tree_digest(demo_store)
    for command, given in (
        (("extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "t.zarr", *TINY,
          "--device", "cuda:99"), "--device cuda:99"),
        (("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", "--device", "cuda:99"),
         "--device cuda:99"),
        (("embed", "demo", "--store", demo_store, "-e", "model=clipclap-tiny-clip", "-e", "device=cuda:99"),
         "-e device=cuda:99"),
        (("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", "--device", "gpu0"),
         "--device gpu0"),
    ):
        r = cli(*command)
        assert r.exit_code == 1 and r.stderr.startswith(f"Error: {given}: "), r
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert ("not a device" in r.stderr) == (given == "--device gpu0")
    assert not (tmp_path / "t.zarr").exists() and not (tmp_path / "runs").exists()
    assert tree_digest(demo_store) == before


@pytest.mark.parametrize("folders_from", ["options", "datasets file"])
def test_benchmark_videos_from_the_split_csv_files(tmp_path, cli, folders_from):
    """UCF videos found by the file names of cls_split's csv files: classes, prompt names and the
    protocol split come from the class-split folder (../shared/benchmarks/UCF/class-split). Both
    folders come from --videos/--split-dir, or from the dataset's `videos`/`split_dir` settings."""
    import csv

    from released_tree import BENCHMARKS

    split_dir = BENCHMARKS / "UCF" / "class-split"
    wanted = {}
    for part in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen", "stage_2_test_seen", "stage_2_test_unseen"):
        rows = list(csv.DictReader((split_dir / "cls_split" / f"{part}.csv").open()))
        listed = {c.strip().casefold() for c in (split_dir / "cls_split" / f"{part}.txt").read_text().splitlines()}
        wanted[part] = next(r for r in rows if r["label"].casefold() in listed)  # the txt decides the classes
    videos = tmp_path / "UCF-101"
    for i, row in enumerate(wanted.values()):
        (videos / row["label"]).mkdir(parents=True, exist_ok=True)
        write_video(videos / row["label"] / f"{row['filename']}.avi", seconds=1.0, channel=i % 3)
    user = tmp_path / "dims.toml"
    user.write_text("[datasets.ucf]\ndims = { video = 32, audio = 32, clip = 512, clap = 1024 }\n")
    folders = ("--videos", videos, "--split-dir", split_dir)
    if folders_from == "datasets file":
        user.write_text(user.read_text() + f'videos = "{videos}"\nsplit_dir = "{{benchmarks}}/UCF/class-split"\n')
        folders = ()
    store = tmp_path / "s.zarr"
    r = cli("extract", "ucf", *folders, "--datasets", user, "--store", store, *TINY, "--workers", "0")
    assert r.exit_code == 0, r
    # one video per partition: the split's other classes have none, so it cannot be scored and
    # is not written (the features are); the videos' partitions still come from the csv files
    assert "no split written: split 'cls_split' of dataset 'ucf' cannot be scored honestly" in r.stderr, r
    fs = FeatureStore(store)
    info = fs.info("ucf")
    ids, labels, partition = fs.read_videos("ucf")
    assert sorted(ids.tolist()) == sorted(row["filename"] for row in wanted.values())
    assert len(info["classes"]) == 101 and "Apply Eye Makeup" in info["prompt_names"]  # clip_class_name column
    assert info["provenance"]["source"] == f"extract({videos})"
    assert fs.split_names("ucf") == [] and "cls_split" in info["class_splits"]
    for part, row in wanted.items():
        row_index = ids.tolist().index(row["filename"])
        assert PARTITIONS[partition[row_index]] == part
        assert info["classes"][labels[row_index]].casefold() == row["label"].casefold()
    # every other video the csv files list is missing on disk: recorded, not extracted
    assert len(info["provenance"]["failed"]) > 1000
    assert set(info["provenance"]["failed"].values()) == {"video file not found"}


@pytest.fixture
def memory_url():
    """A store URL on fsspec's in-memory file system (an object store: no rename, no locks)."""
    import fsspec

    bucket = f"clipclap-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{bucket}/s.zarr"
    fsspec.filesystem("memory").rm(f"/{bucket}", recursive=True)


def test_two_shards_into_an_object_store_give_the_same_dataset(videos, reference, cli, memory_url):
    """On an object store shard 0 creates the working group and the other shards wait for it;
    the shard that finds every video done writes the dataset (run in this process, in turn,
    as the in-memory file system is this process's)."""
    from clipclap_cli.extract.extraction import Extraction, Shard

    early = Extraction(FeatureStore(memory_url), "mine", [], {})
    with pytest.raises(StoreError, match="shard 0 has not created the working group"):
        early.open(Shard(1, 2), wait_s=0.2)
    r = _extract(videos, memory_url, "--workers", "0", "--shard", "0/2", runner=cli)
    assert r.exit_code == 0 and "other shards still have videos to do" in r.stderr, r
    assert FeatureStore(memory_url).datasets() == []
    r = _extract(videos, memory_url, "--workers", "0", "--shard", "1/2", runner=cli)
    assert r.exit_code == 0, r
    _same(_content(memory_url), _content(reference[0]))
    r = _extract(videos, memory_url, "--workers", "0", runner=cli)  # a rerun finds it all done
    assert r.exit_code == 0 and "(unchanged)" in r.stderr, r


def test_writer_lock(tmp_path):
    import socket

    from clipclap_cli.extract.extraction import Extraction

    job = Extraction(FeatureStore(tmp_path / "s.zarr"), "mine", [], {})
    job.path.mkdir(parents=True)
    lock = job.path / "write.lock"
    with job.writer_lock() as first, job.writer_lock() as second:
        assert first and not second  # one writer at a time
    assert not lock.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{socket.gethostname()} {dead.stdout.strip()}")
    with job.writer_lock() as mine:
        assert mine  # a dead process's lock on this host is taken over
    lock.write_text(f"some-other-host {os.getpid()}")
    with job.writer_lock() as mine:
        assert not mine  # another host's lock is respected


def test_two_shard_processes_share_an_object_store(videos, reference, tmp_path):
    """Two extraction processes at once on one object-store URL: shard 1, started first, waits
    for shard 0 to create the working group; the one that finishes last writes the dataset,
    which equals the single-process folder reference."""
    from object_dir import PRELUDE, register

    register()
    url = f"objdir://{tmp_path / 'bucket' / 's.zarr'}"
    root, datasets = videos
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}

    def shard(i: int):
        return clipclap(["extract", "mine", "--videos", root, "--datasets", datasets, "--store", url, *TINY, "--chunk",
                         "2", "--workers", "0", "--shard", f"{i}/2"],
                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, prelude=PRELUDE)

    second = shard(1)
    ready, _, _ = select.select([second.stderr], [], [], 120)
    waiting = second.stderr.readline().decode() if ready else ""
    assert "waiting for shard 0 to create the working group" in waiting, waiting
    first = shard(0)
    results = [(*p.communicate(timeout=240), p.returncode) for p in (first, second)]
    for _, err, code in results:
        assert code == 0, err
    assert sum("other shards still have videos to do" in err for _, err, _ in results) <= 1
    assert FeatureStore(url).datasets() == ["mine"]
    _same(_content(url), _content(reference[0]))


def test_the_features_record_their_recipe_weights_and_versions(reference):
    """Each feature array says how its input was taken and by what: the frame recipe (clean for a
    dataset of one's own), the audio settings, the model, whether its weights were random, the
    libraries' versions."""
    store, _ = reference
    fs = FeatureStore(store)
    video = fs.info("mine")["provenance"]["features"]["video"]
    assert video["frame_recipe"]["name"] == "clean" and video["frame_recipe"]["select"] == "middle-time"
    assert video["model"] == "clipclap-tiny-clip" and video["random_weights"] is True
    assert set(video["versions"]) == {"torch", "open_clip_torch", "av"} and all(video["versions"].values())
    audio = fs.info("mine")["provenance"]["features"]["audio"]
    assert audio["audio"] == {"sample_rate": 32000, "seconds": 10, "mono": "mean of channels",
                              "fit": "centre crop or zero pad at the end"} and audio["random_weights"] is True


def test_features_of_another_recipe_are_not_mixed_into_a_dataset(videos, reference, tmp_path, cli):
    """A dataset extracted with one frame recipe is not re-extracted with another into the same
    array (nor with other weights) unless --replace says so; the recipe chosen is recorded."""
    import shutil

    store = tmp_path / "s.zarr"
    shutil.copytree(reference[0], store)
    before = _content(store)
    r = _extract(videos, store, "--workers", "0", "--frame-recipe", "ucf-released", runner=cli)
    assert r.exit_code == 1 and "holds features of another frame recipe" in r.stderr and "--replace" in r.stderr
    _same(_content(store), before)
    r = _extract(videos, store, "--workers", "0", "--frame-recipe", "ucf-released", "--replace", runner=cli)
    assert r.exit_code == 0, r.stderr
    after = FeatureStore(store).info("mine")["provenance"]["features"]["video"]["frame_recipe"]
    assert after["name"] == "ucf-released" and after["pixels"] == "float-round-trip"
    assert not np.allclose(_content(store)["video"], before["video"])
    r = _extract(videos, store, "--workers", "0", "--frame-recipe", "no-such", runner=cli)
    assert r.exit_code == 1 and "unknown frame recipe 'no-such'" in r.stderr


def _new_folder(videos, tmp_path) -> tuple[Path, Path]:
    """A copy of the generated videos folder and its datasets file, to add videos to."""
    import shutil

    root, datasets = videos
    mine = tmp_path / "videos"
    shutil.copytree(root, mine)
    return mine, datasets


def test_a_rerun_extracts_only_new_videos_and_retries_only_failed_ones(videos, reference, tmp_path):
    """The working folder goes once the dataset is written; a rerun after adding a video extracts
    that video alone (the others' features are the stored ones, bit for bit); --retry-failed
    tries the 3 failed videos alone, not their chunks; --failures-csv lists every failure."""
    import csv
    import shutil

    root, datasets = _new_folder(videos, tmp_path)
    store = tmp_path / "s.zarr"
    shutil.copytree(reference[0], store)
    assert not (store / ".extract-mine").exists()
    before = _content(store)
    write_video(root / "Fencing" / "clip9.mp4", seconds=1.5, channel=2, freq=900)
    args = ["extract", "mine", "--videos", str(root), "--datasets", str(datasets), "--store", str(store), *TINY,
            "--chunk", "2", "--workers", "0"]
    r = clipclap_run(args)
    assert r.returncode == 0 and "1 videos processed, 0 failed" in r.stderr, r.stderr
    after = _content(store)
    assert after["ids"] == sorted(before["ids"] + ["Fencing/clip9"], key=after["ids"].index)
    old_rows = [after["ids"].index(i) for i in before["ids"]]
    assert np.array_equal(after["video"][old_rows], before["video"]) and after["failed"] == before["failed"]
    assert not (store / ".extract-mine").exists()
    (root / "Archery" / "corrupt.mp4").unlink()  # a failed video mended: copied over by a good one
    write_video(root / "Archery" / "corrupt.mp4", seconds=1.0)
    r = clipclap_run([*args, "--retry-failed", "--failures-csv", str(tmp_path / "failed.csv")])
    assert r.returncode == 0 and "retrying 3 failed videos" in r.stderr and "3 videos processed, 2 failed" in r.stderr
    assert set(_content(store)["failed"]) == {"Drumming/silent", "Fencing/empty"}
    rows = list(csv.reader((tmp_path / "failed.csv").open()))
    assert rows[0] == ["id", "reason"] and sorted(r[0] for r in rows[1:]) == ["Drumming/silent", "Fencing/empty"]


SITECUSTOMIZE = '''
import os, time
import clipclap_cli.extract.extraction as extraction
_decode = extraction.decode

def decode(job):
    """A decoder that crashes on one video, or is slow on all, in the worker processes too."""
    if os.environ.get("CRASH_ON") and os.environ["CRASH_ON"] in job[0]:
        os.kill(os.getpid(), 9)
    if os.environ.get("SLOW"):
        time.sleep(float(os.environ["SLOW"]))
    return _decode(job)

extraction.decode = decode
'''


def _with_patched_decoder(tmp_path, **env) -> dict[str, str]:
    (tmp_path / "patch").mkdir(exist_ok=True)
    (tmp_path / "patch" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return os.environ | {"PYTHONPATH": str(tmp_path / "patch")} | env


def test_a_decoder_crash_fails_its_video_and_the_run_goes_on(videos, tmp_path):
    """A worker killed while decoding (a segfault, the OOM killer) fails that video, named; the
    others of its batch and every other chunk are extracted; without a terminal, progress comes
    as log lines."""
    env = _with_patched_decoder(tmp_path, CRASH_ON="Drumming/clip1", CLIPCLAP_PROGRESS_SECONDS="0")
    root, datasets = videos
    # The workers decode, not the command: it can be a prestarted one (tests/prestarted.py), which
    # sets PYTHONPATH for the new interpreter it starts (multiprocessing's forkserver) to find the patch.
    patch = env.pop("PYTHONPATH")
    r = clipclap_run(["extract", "mine", "--videos", root, "--datasets", datasets, "--store", tmp_path / "s.zarr",
                      *TINY, "--chunk", "4", "--workers", "2"], env=env, timeout=600,
                     prelude=f"import os; os.environ['PYTHONPATH'] = {patch!r}")
    assert r.returncode == 0, r.stderr
    failed = _content(tmp_path / "s.zarr")["failed"]
    assert failed["Drumming/clip1"] == "the decoder crashed on this video (its worker process died)"
    assert set(failed) == {"Archery/corrupt", "Drumming/silent", "Fencing/empty", "Drumming/clip1"}
    assert "extract mine: 12/12" in r.stderr and "videos/s" in r.stderr


def test_workers_that_cannot_start_are_one_error_not_a_crash_per_video(videos, tmp_path):
    """A script that decodes with workers but has no main guard: Python's multiprocessing runs it
    again in each worker, which dies as it starts. Said at once, with the fix; with the guard the
    same script decodes its videos."""
    root, _ = videos
    clips = sorted(str(p) for p in root.rglob("clip*.mp4"))[:3]
    assert len(clips) == 3
    work = (f"from clipclap_cli.extract.extraction import Decoder\n"
            f"jobs = [(p, p, p, ('video',), 1, 'clean') for p in {clips!r}]\n")
    unguarded = work + "print([reason for _, reason in Decoder(2).decode(jobs)])\n"
    guarded = work + "if __name__ == '__main__':\n    print([reason for _, reason in Decoder(2).decode(jobs)])\n"
    for name, text in (("unguarded.py", unguarded), ("guarded.py", guarded)):
        (tmp_path / name).write_text(text)
    r = subprocess.run([sys.executable, str(tmp_path / "unguarded.py")], capture_output=True, text=True, timeout=300)
    said = [line for line in r.stderr.splitlines() if line.startswith("clipclap_cli.errors.ClipclapError: ")]
    assert r.returncode != 0 and said, r.stderr[-2000:]  # (multiprocessing may warn after it, at exit)
    assert said[-1].endswith('under `if __name__ == "__main__":` (Python\'s multiprocessing runs the main script '
                             'again in each worker), or decode in this process (workers=0)'), said
    r = subprocess.run([sys.executable, str(tmp_path / "guarded.py")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == str([None] * len(clips)), r.stderr[-2000:]


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_extract_leaves_no_worker_behind(videos, tmp_path):
    import signal
    import time
    import uuid

    marker = f"CLIPCLAP_TEST_{uuid.uuid4().hex}"
    env = _with_patched_decoder(tmp_path, SLOW="60") | {marker: "1"}
    root, datasets = videos
    main = subprocess.Popen([sys.executable, "-m", "clipclap_cli", "extract", "mine", "--videos", str(root),
                             "--datasets", str(datasets), "--store", str(tmp_path / "s.zarr"), *TINY, "--workers",
                             "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_processes_with(marker)) < 3 and time.monotonic() < deadline:  # main, forkserver, workers
        time.sleep(0.2)
    assert len(_processes_with(marker)) >= 3, "the workers never started"
    time.sleep(1.0)
    os.kill(main.pid, signal.SIGKILL)
    main.wait()
    deadline = time.monotonic() + 30
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []
