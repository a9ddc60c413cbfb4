"""The feature store: round trips, and writes that are atomic per group."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from clipclap_cli.api import PARTITIONS, FeatureBundle
from clipclap_cli.errors import StoreError
from clipclap_cli.store.feature_store import FeatureStore


def _bundle(n=10, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return FeatureBundle(
        classes=["a", "b", "c"][:c], prompt_names=["A", "B", "C"][:c], ids=[f"v{i}" for i in range(n)],
        labels=np.arange(n) % c, features={"video": rng.random((n, 4), dtype=np.float32)},
        label_embeddings={"clip": rng.random((c, 2), dtype=np.float32)},
        partition=np.zeros(n, np.int8), provenance={"fingerprint": str(seed)},
    )


@pytest.fixture(params=["folder", "object store"])
def where(request, tmp_path):
    """A store location of each kind: a folder, and an fsspec URL (fsspec's in-memory file
    system, which has no rename, like S3 or GCS)."""
    if request.param == "folder":
        yield tmp_path / "s.zarr"
        return
    import fsspec

    bucket = f"clipclap-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{bucket}/s.zarr"
    fsspec.filesystem("memory").rm(f"/{bucket}", recursive=True)


def _keys(fs: FeatureStore, under: str = "") -> list[str]:
    """The names directly under a key of the store (folder or object store)."""
    if fs.path is not None:
        return sorted(p.name for p in (fs.path / under).iterdir())
    loc = fs.location
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in loc.fs.ls(loc._full(under), detail=False))


def test_round_trip(where):
    fs = FeatureStore(where)
    b = _bundle()
    fs.write_dataset("d", b, {"source": "test"})
    ids, labels, part = fs.read_videos("d")
    assert list(ids) == b.ids and (labels == b.labels).all() and (part == 0).all()
    np.testing.assert_array_equal(fs.read_features("d", "video"), b.features["video"])
    np.testing.assert_array_equal(fs.read_label_embeddings("d", "clip"), b.label_embeddings["clip"])
    assert fs.info("d")["classes"] == ["a", "b", "c"] and fs.info("d")["source"] == "test"


def test_write_killed_half_way_leaves_previous_version(where, monkeypatch):
    fs = FeatureStore(where)
    fs.write_dataset("d", _bundle(seed=1), {})
    old = fs.read_features("d", "video")

    import zarr

    real = zarr.Group.create_array
    calls = {"n": 0}

    def dying(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if killed while writing
        return real(self, *a, **kw)

    monkeypatch.setattr(zarr.Group, "create_array", dying)
    with pytest.raises(KeyboardInterrupt):
        fs.write_dataset("d", _bundle(seed=2), {})
    monkeypatch.undo()
    np.testing.assert_array_equal(fs.read_features("d", "video"), old)
    keys = _keys(fs)
    assert len(keys) == 2 and keys[1] == "zarr.json", keys  # one dataset, no staging left behind
    assert keys[0].startswith("d~")  # its one version


def test_replacing_groups_keeps_one_version_of_each(where):
    fs = FeatureStore(where)
    fs.write_dataset("d", _bundle(seed=1), {})
    fs.write_dataset("d", _bundle(seed=2), {})
    np.testing.assert_array_equal(fs.read_features("d", "video"), _bundle(seed=2).features["video"])
    for seed in (3, 4):
        fs.write_label_embeddings("d", "clip", np.full((3, 2), seed, np.float32), {"how": seed})
        fs.write_split("d", "s", {p: np.array([seed]) for p in PARTITIONS}, {"stage_1": [0]}, {"how": seed})
    assert fs.read_label_embeddings("d", "clip").tolist() == [[4.0, 4.0]] * 3
    assert fs.read_split("d", "s").indices["stage_1_train"].tolist() == [4] and fs.split_names("d") == ["s"]
    [dataset] = [k for k in _keys(fs) if k != "zarr.json"]
    assert len(_keys(fs, f"{dataset}/label_embeddings")) == 2  # clip (one version) and zarr.json
    assert len(_keys(fs, f"{dataset}/splits")) == 2


def test_object_store_reads_the_newest_complete_version():
    """What a writer killed with SIGKILL leaves (a newer version without `complete`) is ignored;
    a newer complete one (another writer's) is what readers see."""
    import fsspec
    import zarr

    url = f"memory://clipclap-test-{uuid.uuid4().hex[:8]}/s.zarr"
    fs = FeatureStore(url)
    try:
        fs.write_dataset("d", _bundle(seed=1), {})
        [committed_key] = [k for k in _keys(fs) if k.startswith("d~")]
        half = zarr.open_group(fs.location.zarr("d~99999999999999999999-ffffffff"), mode="w")
        half.create_array("videos/labels", data=np.zeros(2, np.int32))
        assert fs.datasets() == ["d"] and fs.read_videos("d")[0].tolist() == _bundle(seed=1).ids
        with fs.location.committing("", "d") as newer:  # as another writer, after it
            g = zarr.open_group(newer, mode="w")
            g.attrs.update({"complete": True, "classes": ["z"]})
        assert fs.info("d")["classes"] == ["z"]
        assert committed_key not in _keys(fs)  # the newer writer removed the older version
    finally:
        fsspec.filesystem("memory").rm("/" + url.split("/")[2], recursive=True)


def test_object_store_writers_at_once_never_remove_each_others_version_in_the_making():
    """Behind a URL there is no writer lock (two extraction shards finishing at once commit
    their own versions). A writer committing while another still writes its version must leave
    that version alone: removed under it, it would be committed as a version that is not there.
    The newest commit counts; each removes the version it supersedes."""
    import fsspec
    import zarr

    url = f"memory://clipclap-test-{uuid.uuid4().hex[:8]}/s.zarr"
    fs = FeatureStore(url)
    try:
        fs.write_dataset("d", _bundle(seed=1), {})
        first = fs.location.committing("", "d")
        slow = zarr.open_group(first.__enter__(), mode="w")  # started first, finishes last
        slow.create_array("written_early", data=np.arange(3))
        with fs.location.committing("", "d") as quick:
            zarr.open_group(quick, mode="w").attrs.update({"complete": True, "classes": ["quick"]})
        assert fs.info("d")["classes"] == ["quick"]
        slow.attrs.update({"complete": True, "classes": ["slow"]})
        first.__exit__(None, None, None)
        assert fs.info("d")["classes"] == ["slow"]
        [key] = [k for k in _keys(fs) if k.startswith("d~")]  # the quick writer's version went with its commit
        assert zarr.open_group(fs.location.zarr(key), mode="r")["written_early"][:].tolist() == [0, 1, 2]
    finally:
        fsspec.filesystem("memory").rm("/" + url.split("/")[2], recursive=True)


def test_group_without_complete_flag_is_not_a_dataset(tmp_path):
    fs = FeatureStore(tmp_path / "s.zarr")
    fs.write_dataset("d", _bundle(), {})
    import zarr

    zarr.open_group(tmp_path / "s.zarr" / "half", mode="w")  # e.g. written by something killed
    assert fs.datasets() == ["d"]
    with pytest.raises(StoreError, match=r"'half' is not in the store .*, which holds d "):
        fs.info("half")


@pytest.mark.parametrize("writes", ["dataset", "split", "label embeddings"])
def test_a_read_overtaken_by_another_write_fails_instead_of_mixing(where, writes):
    """Another process replaces part of the dataset between two reads of one load: the load
    ends in one StoreError (on an object store the version it read is removed meanwhile; in a
    folder the second read would see the new data), not in arrays from two versions."""
    fs, other = FeatureStore(where), FeatureStore(where)
    fs.write_dataset("d", _bundle(seed=1), {})
    fs.write_split("d", "s", {p: np.array([1]) for p in PARTITIONS}, {"stage_1": [0]}, {})
    write = {"dataset": lambda: other.write_dataset("d", _bundle(seed=2), {}),
             "split": lambda: other.write_split("d", "s", {p: np.array([2]) for p in PARTITIONS}, {"stage_1": [0]}, {}),
             "label embeddings": lambda: other.write_label_embeddings("d", "clip", np.ones((3, 2), np.float32), {})}
    with (pytest.raises(StoreError, match="written by another process while it was being read"),
          fs.consistent_read("d")):
        fs.read_videos("d")
        write[writes]()
        fs.read_features("d", "video")
    with fs.consistent_read("d"):  # undisturbed: the reads come through, from the current version
        np.testing.assert_array_equal(fs.read_features("d", "video"),
                                      _bundle(seed=2 if writes == "dataset" else 1).features["video"])


def test_consistent_read_finds_the_dataset_once(where, monkeypatch):
    """Inside the block every read reuses the group found at its start: the store's root is
    listed three times (the version before, the group, the version after), not once per read."""
    from clipclap_cli.data.protocol_data import load_protocol_data

    fs = FeatureStore(where)
    b = _bundle()
    b.features["audio"] = b.features["video"] * 2
    b.label_embeddings["clap"] = b.label_embeddings["clip"] + 1
    fs.write_dataset("d", b, {})
    labels = np.asarray(b.labels)
    by_class = [np.flatnonzero(labels == c) for c in range(3)]  # a split that can be scored
    fs.write_split("d", "s", {"stage_1_train": by_class[0], "stage_1_val_seen": by_class[0],
                              "stage_1_val_unseen": by_class[1], "stage_2_test_seen": np.concatenate(by_class[:2]),
                              "stage_2_test_unseen": by_class[2]},
                   {"stage_1_train": [0], "stage_1_val_seen": [0], "stage_1_val_unseen": [1], "stage_2_train": [0, 1],
                    "stage_2_test_seen": [0, 1], "stage_2_test_unseen": [2]}, {})
    listings = []
    original = FeatureStore._committed_datasets
    monkeypatch.setattr(FeatureStore, "_committed_datasets", lambda self: listings.append(1) or original(self))
    data = load_protocol_data(fs, "d", "s")
    assert len(listings) == 3
    np.testing.assert_array_equal(data.audio.numpy(), b.features["audio"])
    np.testing.assert_array_equal(data.class_text.numpy(), np.concatenate([b.label_embeddings["clip"],
                                                                           b.label_embeddings["clap"]], axis=1))


def test_the_extraction_working_group(where):
    """An extraction's working group, laid out and written by the store: it counts once created
    (in a folder renamed into place, behind a URL its settings last), is no dataset, takes rows
    with their statuses and any reason's length, and in a folder one process commits it."""
    from clipclap_cli.store.extraction_group import DONE, FAILED, PENDING, Blueprint, ExtractionGroup, Rows

    fs = FeatureStore(where)
    fs.open_for_writing()
    group = ExtractionGroup(fs, "d")
    assert not group.ready() and group.renamed_into_place == (fs.path is not None)
    plan = Blueprint(ids=[f"v{i}" for i in range(5)], labels=np.array([0, 1, 0, 1, 1]), dims={"video": 3, "audio": 2},
                     chunk=2, attrs={"settings": {"x": 1}, "classes": ["a", "b"]})
    group.create(lambda: plan)
    assert group.ready() and group.settings == {"x": 1} and fs.datasets() == []
    assert all(st.tolist() == [PENDING] * 5 for st in group.status(["video", "audio"]).values())
    reason = "a reason longer than any before it " * 3
    group.write(2, Rows(features={"video": np.ones((2, 3), np.float32), "audio": np.full((2, 2), 2, np.float32)},
                        status={m: np.array([DONE, FAILED]) for m in ("video", "audio")},
                        reasons=np.array(["", reason], dtype=object)))
    block = group.read(["video", "audio"])
    assert block.features["video"].tolist() == [[0] * 3] * 2 + [[1] * 3] * 2 + [[0] * 3]
    assert block.features["audio"][2:4].tolist() == [[2, 2]] * 2
    assert block.status["audio"].tolist() == [PENDING, PENDING, DONE, FAILED, PENDING]
    assert block.reasons.tolist() == ["", "", "", reason, ""]
    ids, labels = group.videos()
    assert ids.tolist() == plan.ids and labels.tolist() == [0, 1, 0, 1, 1]
    group.write_status({"video": np.zeros(5, np.int8)})
    assert group.status(["video", "audio"])["video"].tolist() == [PENDING] * 5
    if fs.path is not None:
        group.create(lambda: pytest.fail("a group that is there is not built again"))
        with group.committer() as first, group.committer() as second:
            assert first and not second
    group.remove()
    assert not group.ready()


def test_only_the_store_imports_zarr():
    """The store owns its layout: no module outside clipclap_cli/store/ (nor a built-in plugin)
    imports zarr; extraction writes through `store/extraction_group.py`."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    found = []
    for path in [*(repo / "clipclap_cli").rglob("*.py"), *(repo / "plugins").glob("*.py")]:
        if (repo / "clipclap_cli" / "store") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(repo)}:{node.lineno}" for n in names if n.split(".")[0] == "zarr"]
    assert found == []
