"""The store never destroys what it does not own (issue: "A store that never destroys what it
does not own"): names checked at the edge, a store that only touches its own folder, replaces
that survive a kill at any point, derived data kept or refused, and reports that check what
they read. Every victim file is made here; every expectation is the file tree itself."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipclap_cli.api import PARTITIONS, FeatureBundle
from clipclap_cli.data.datasets_toml import DatasetEntry
from clipclap_cli.data.ingest import store_bundle
from clipclap_cli.errors import NameRuleError, StoreError
from clipclap_cli.names import check_name, is_valid_name
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.store.locations import VERSION_SEP
from helpers import register_plugin, tree_digest

# ---------------------------------------------------------------- names

HOSTILE = ["../victim", "../../victim", "../../../victim", "..", ".", ".hidden", "a/b", "a\\b", "~x", "x~1",
           "-x", "--help", "", " ", "a b", "/abs", "a\x00b", "é", "x" * 101, "ucf/../../victim", "$HOME", "*"]


def test_the_name_rule_by_hand():
    for good in ("ucf", "cls_split", "drawn_seed0", "vgg-sound.v2", "A1", "x" * 100, "_x"):
        assert check_name("split", good) == good
    for bad in HOSTILE:
        assert not is_valid_name(bad), bad
        with pytest.raises(NameRuleError, match=r"split name .* is not allowed: use letters, digits"):
            check_name("split", bad)


@pytest.fixture
def playground(tmp_path, demo_store):
    """work/a/b/store.zarr (a copy of the demo store) with victims beside it and above it, so that
    any name that climbs out of the store finds something to destroy."""
    work = tmp_path / "work"
    store = work / "a" / "b" / "store.zarr"
    shutil.copytree(demo_store, store)
    for folder in (work, work / "a", work / "a" / "b"):
        (folder / "victim").mkdir(parents=True)
        (folder / "victim" / "thesis.txt").write_text("four years of work\n")
        (folder / "ucf").mkdir()
        (folder / "ucf" / "notes.txt").write_text("mine\n")
    return work, store


def _outside(work: Path, store: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(work).items() if not (work / k).is_relative_to(store)}


def _commands(name: str, store: Path, tree: Path) -> list[list[str]]:
    """Every command that takes a dataset or split name, with `name` in that place."""
    s = ["--store", str(store)]
    return [
        ["split", "demo", "--split", name, "--seen", "20", "--unseen", "6", *s],
        ["split", "demo", "--split", name, *s],
        ["split", name, "--seen", "20", "--unseen", "6", *s],
        ["import", name, str(tree), *s],
        ["extract", name, "--videos", str(tree), *s],
        ["embed", name, *s],
        ["train", name, *s, "--runs-dir", str(store.parent / "runs"), "--epochs", "1",
         "--batches-per-epoch", "1"],
        ["train", "demo", "--split", name, *s, "--runs-dir", str(store.parent / "runs"), "--epochs", "1",
         "--batches-per-epoch", "1"],
        ["evaluate", "demo", "--split", name, "--stage1", str(tree), "--stage2", str(tree), *s],
        ["datasets", "show", name, *s],
    ]


hostile_names = st.one_of(
    st.sampled_from(HOSTILE),
    st.builds(lambda parts: "/".join(parts), st.lists(st.sampled_from(["..", ".", "victim", "ucf", "a", "b", ""]),
                                                      min_size=1, max_size=6)),
    st.text(alphabet="./\\~-_ abxyz0é$*", min_size=0, max_size=12),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names)
def test_no_name_reaches_outside_the_store(cli, playground, name):
    """Whatever the name, no command removes or writes a file outside the store; a name that
    breaks the rule is refused in one line that names it."""
    work, store = playground
    before = _outside(work, store)
    store_before = tree_digest(store)
    cwd = os.getcwd()
    os.chdir(store.parent)  # relative names and paths resolve among the victims
    try:
        for args in _commands(name, store, work / "a" / "b" / "ucf"):
            r = cli(*args)
            if not is_valid_name(name) and not name.startswith("-"):  # "-x", "--help": options to the parser
                assert r.exit_code == 1, (args, r)
                lines = r.stderr.strip().splitlines()
                assert len(lines) == 1 and "is not allowed" in lines[0], (args, r)
    finally:
        os.chdir(cwd)
        shutil.rmtree(store.parent / "runs", ignore_errors=True)
    assert _outside(work, store) == before, name
    if not is_valid_name(name):
        assert tree_digest(store) == store_before, name


def test_datasets_file_entry_with_a_path_for_a_name_is_refused(cli, playground):
    work, store = playground
    user = work / "mine.toml"
    user.write_text('[datasets."../victim"]\nkind = "released-features"\n')
    before = _outside(work, store)
    r = cli("import", "ucf", work / "ucf", "--store", store, "--datasets", user)
    assert r.exit_code == 1 and "'../victim'" in r.stderr and "is not allowed" in r.stderr, r
    assert _outside(work, store) == before


def test_datasets_file_split_with_a_path_is_refused(cli, playground):
    work, store = playground
    user = work / "mine.toml"
    user.write_text('[datasets.demo]\nsplit = "../../victim"\n')
    before = _outside(work, store)
    r = cli("train", "demo", "--store", store, "--runs-dir", work / "runs", "--datasets", user)
    assert r.exit_code == 1 and "split: '../../victim' is not allowed as a split name" in r.stderr, r
    assert _outside(work, store) == before


def test_plugin_registering_a_path_as_a_head_name_is_refused(cli, pm):
    from clipclap_plugins.clipclap_head import ClipClapHead

    class Sneaky(ClipClapHead):
        head_id = "../../escape"

    register_plugin(pm, "sneaky", heads=[Sneaky])
    r = cli("heads", "list", "--json")  # the plugin is left out, named; every other head is there
    assert r.exit_code == 0 and "../../escape" not in r.stdout and '"clipclap"' in r.stdout, r
    assert "plugin 'sneaky' is left out: its register_heads hook failed (fusion head name '../../escape' is not " \
           "allowed" in r.stderr, r


def test_a_parameter_value_cannot_lead_the_run_folder_elsewhere(cli, pm, playground):
    """Head parameters named on the command line name the run folder (`clipclap,tag=x`): a
    value that is not finite, or that holds a path, is refused before any folder is made."""
    from dataclasses import dataclass

    from clipclap_plugins.clipclap_head import ClipClapHead

    class Tagged(ClipClapHead):
        head_id = "tagged"

        @dataclass(frozen=True)
        class Params(ClipClapHead.Params):
            tag: str = "x"

    register_plugin(pm, "tagged", heads=[Tagged])
    work, store = playground
    before = _outside(work, store)
    for head, pair, says in (("clipclap", "dropout=nan", "expected a finite number"),
                             ("clipclap", "dropout=inf", "expected a finite number"),
                             ("clipclap", "dropout=-inf", "expected a finite number"),
                             ("tagged", "tag=../../../victim", "cannot name a run folder"),
                             ("tagged", "tag=.hidden", "cannot name a run folder"),
                             ("tagged", "tag=a/b", "cannot name a run folder")):
        r = cli("train", "demo", "--head", head, "--store", store, "--runs-dir", work / "a" / "b" / "runs",
                "-p", pair, "--epochs", "1", "--batches-per-epoch", "1")
        assert r.exit_code == 1 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r
    assert _outside(work, store) == before


# ---------------------------------------------------------------- the store only touches its own

def _released_tree(tmp_path) -> Path:
    from released_tree import write_released_tree

    root = tmp_path / "ucf"
    write_released_tree(root, "UCF", "ucf", "ucf_clip_class_names.csv", "clip_class_name", max_per_class=1)
    return root


def test_import_with_the_download_folder_as_store_is_refused(cli, tmp_path, monkeypatch):
    """`clipclap import ucf ucf --store .` in the folder that holds the download: refused, the
    download is whole afterwards."""
    _released_tree(tmp_path)
    (tmp_path / "paper.pdf").write_text("not a store\n")
    before = tree_digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    r = cli("import", "ucf", "ucf", "--store", ".")
    assert r.exit_code == 1 and "holds other files and is not a clipclap store" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("command", [["demo", "--no-train"], ["split", "demo", "--seen", "2", "--unseen", "1"]])
def test_a_folder_of_other_things_is_not_a_store(cli, tmp_path, command):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "table.csv").write_text("a,b\n")
    before = tree_digest(tmp_path)
    r = cli(*command, "--store", folder)
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r
    assert tree_digest(tmp_path) == before


def test_a_file_is_not_a_store(cli, tmp_path):
    (tmp_path / "features.zip").write_bytes(b"PK\x03\x04 not a folder")
    before = tree_digest(tmp_path)
    r = cli("demo", "--no-train", "--store", tmp_path / "features.zip")
    assert r.exit_code == 1 and "is a file, not a store folder" in r.stderr, r
    assert tree_digest(tmp_path) == before


def test_another_zarr_hierarchy_is_not_written(cli, tmp_path):
    import zarr

    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w").create_array("x", data=np.arange(3))
    before = tree_digest(tmp_path)
    r = cli("demo", "--no-train", "--store", other)
    assert r.exit_code == 1 and "zarr hierarchy that clipclap did not write" in r.stderr, r
    assert tree_digest(tmp_path) == before


def test_an_empty_folder_becomes_a_store(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert cli("demo", "--no-train", "--store", tmp_path / "empty").exit_code == 0
    assert FeatureStore(tmp_path / "empty").datasets() == ["demo"]


def test_a_user_folder_inside_the_store_survives_writes(tmp_path):
    """A folder of the user's that sits in the store under a dataset's name is not the store's:
    writing and replacing that dataset leaves it alone."""
    fs = FeatureStore(tmp_path / "s.zarr")
    fs.write_dataset("d", _bundle(seed=1), {})
    mine = tmp_path / "s.zarr" / "d"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine\n")
    fs2 = FeatureStore(tmp_path / "s.zarr")
    fs2.write_dataset("d", _bundle(seed=2), {})
    fs2.write_dataset("d", _bundle(seed=3), {})
    assert (mine / "keep.txt").read_text() == "mine\n"
    np.testing.assert_array_equal(fs2.read_features("d", "video"), _bundle(seed=3).features["video"])


def test_remove_refuses_what_lies_outside_the_store(tmp_path):
    fs = FeatureStore(tmp_path / "s.zarr")
    fs.write_dataset("d", _bundle(), {})
    (tmp_path / "victim").mkdir()
    (tmp_path / "s.zarr" / "link").symlink_to(tmp_path / "victim")
    for key in ("../victim", "link", ""):
        with pytest.raises(StoreError, match="refusing to remove"):
            fs.location.remove(key)
    assert (tmp_path / "victim").is_dir()


# ---------------------------------------------------------------- replacing is recoverable

def _bundle(n=12, c=3, seed=0, ids=None):
    rng = np.random.default_rng(seed)
    return FeatureBundle(
        classes=["a", "b", "c"][:c], prompt_names=["A", "B", "C"][:c], ids=ids or [f"v{i}" for i in range(n)],
        labels=np.arange(n) % c, features={"video": rng.random((n, 4), dtype=np.float32),
                                            "audio": rng.random((n, 3), dtype=np.float32)},
        label_embeddings={"clip": rng.random((c, 2), dtype=np.float32)},
        partition=_partitions(n),
        provenance={"fingerprint": str(seed)},
        class_splits={"cls_split": {"stage_1_train": ["a"], "stage_1_val_seen": ["a"], "stage_1_val_unseen": ["b"],
                                    "stage_2_test_seen": ["a", "b"], "stage_2_test_unseen": ["c"]}},
    )


def _partitions(n: int) -> np.ndarray:
    """Class a (label 0) in stage-1 train, val-seen and test-seen; b in val-unseen and test-seen;
    c in test-unseen: every partition of the bundles' class split has videos."""
    by_label = {0: ["stage_1_train", "stage_1_val_seen", "stage_2_test_seen"],
                1: ["stage_1_val_unseen", "stage_2_test_seen"], 2: ["stage_2_test_unseen"]}
    return np.asarray([PARTITIONS.index(by_label[i % 3][(i // 3) % len(by_label[i % 3])]) for i in range(n)],
                      dtype=np.int8)


def _entry() -> DatasetEntry:
    from clipclap_cli.api import FeatureDims

    return DatasetEntry("d", "d", "synthetic", "cls_split", FeatureDims(audio=3, video=4, text_parts=(("clip", 2),)),
                        {}, None, None, "test")


#: A pid no process has (above Linux's pid_max of 2**22).
DEAD_PID = 2**22 + 12345


def _died(store: Path) -> None:
    """The lock files of `store` as this process's death leaves them: naming a pid that is gone."""
    alive = f"{socket.gethostname()} {os.getpid()}"
    for lock in store.rglob("*.lock"):
        text = lock.read_text()
        if text.split("\n")[0] == alive:
            lock.write_text(text.replace(alive, f"{socket.gethostname()} {DEAD_PID}", 1))


def _copied_before_every_change(monkeypatch, store: Path, copies: Path) -> list[Path]:
    """Copy `store` before each change the writer makes to it (every chunk and metadata write,
    rename, removal, folder): copy k is what a kill -9 just before the k-th change leaves, since
    a process killed there makes no change after it (no cleanup runs). zarr writes from threads:
    at each change the changes under way complete and none starts until the copy is made, as a
    kill lets what the kernel has begun finish. Returns the copies, in order, as they are made."""
    import threading

    import zarr.storage._local

    made: list[Path] = []
    state = {"copying": False, "in_flight": 0}
    turn = threading.Condition()
    inside = threading.local()  # a change made inside another (zarr's write, then its rename) is part of it

    def wrap(fn):
        def wrapped(*a, **kw):
            if getattr(inside, "yes", False):
                return fn(*a, **kw)
            with turn:
                turn.wait_for(lambda: not state["copying"])
                state["copying"] = True
                turn.wait_for(lambda: state["in_flight"] == 0)
                inside.yes = True  # the copy's own folders and files are not the writer's changes
                try:
                    made.append(copies / f"s{len(made) + 1}.zarr")
                    shutil.copytree(store, made[-1])
                    _died(made[-1])
                finally:
                    inside.yes = False
                    state["copying"] = False
                    turn.notify_all()
                state["in_flight"] += 1  # only for a change that goes ahead (not after a failed copy)
            inside.yes = True
            try:
                return fn(*a, **kw)
            finally:
                inside.yes = False
                with turn:
                    state["in_flight"] -= 1
                    turn.notify_all()
        return wrapped

    from clipclap_cli.store import locations

    host = locations._writer()[1]
    monkeypatch.setattr(locations, "_writer", lambda: (DEAD_PID, host))  # the writer that dies
    monkeypatch.setattr(zarr.storage._local, "_put", wrap(zarr.storage._local._put))  # every chunk and zarr.json
    for module, name in ((os, "rename"), (os, "replace"), (os, "unlink"), (shutil, "rmtree"), (os, "mkdir")):
        monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    monkeypatch.setattr(Path, "unlink", wrap(Path.unlink))
    return made


def _snapshot(path: Path) -> dict:
    """What a fresh reader sees of dataset d: its features, splits and label embeddings."""
    fs = FeatureStore(path)
    return {"video": fs.read_features("d", "video").tolist(), "splits": {
        s: {p: v.tolist() for p, v in fs.read_split("d", s).indices.items()} for s in fs.split_names("d")},
        "clip": fs.read_label_embeddings("d", "clip").tolist()}


def _debris(path: Path) -> list[str]:
    """Anything in the store that is not the one committed version of a node."""
    found = []
    for folder in [path, *[p / sub for p in path.iterdir() if p.is_dir() for sub in ("splits", "label_embeddings")]]:
        if not folder.is_dir():
            continue
        names = [c.name for c in folder.iterdir() if c.name != "zarr.json"]
        bases = [n.partition(VERSION_SEP)[0] for n in names]
        found += [n for n in names if n.startswith(".") or bases.count(n.partition(VERSION_SEP)[0]) > 1]
    return found


@pytest.mark.parametrize("write", ["reimport", "split", "label embeddings"])
def test_a_kill_at_any_point_of_a_replace_leaves_old_or_new(tmp_path, monkeypatch, write):
    """A kill at every file-system change of a replace (before the k-th chunk or metadata write,
    rename or removal, for every k of the write: the store as copied there): the store reads wholly
    the old data or wholly the new, and the next open for writing leaves no debris and the same data."""
    new_bundle = _bundle(seed=2)  # same videos and classes, other features: derived data is kept
    actions = {
        "reimport": lambda fs: store_bundle(fs, _entry(), new_bundle),
        "split": lambda fs: fs.write_split("d", "drawn", {p: np.array([5, 6]) for p in PARTITIONS},
                                           {"stage_1_train": [0]}, {}),
        "label embeddings": lambda fs: fs.write_label_embeddings("d", "clip", np.full((3, 2), 7, np.float32), {}),
    }
    template = tmp_path / "template.zarr"
    fs = FeatureStore(template)
    store_bundle(fs, _entry(), _bundle(seed=1))
    fs.write_split("d", "drawn", {p: np.array([1]) for p in PARTITIONS}, {"stage_1_train": [0]}, {})
    old = _snapshot(template)
    shutil.copytree(template, tmp_path / "whole.zarr")
    actions[write](FeatureStore(tmp_path / "whole.zarr"))
    new = _snapshot(tmp_path / "whole.zarr")
    assert new != old
    store, copies = tmp_path / "s.zarr", tmp_path / "killed"
    shutil.copytree(template, store)
    copies.mkdir()
    with monkeypatch.context() as m:
        killed = _copied_before_every_change(m, store, copies)
        actions[write](FeatureStore(store))
    assert _snapshot(store) == new
    seen = []
    for k, copy in enumerate(killed, 1):
        now = _snapshot(copy)
        assert now in (old, new), k
        seen.append(now == new)
        FeatureStore(copy).open_for_writing()  # the next writer tidies up
        assert _snapshot(copy) == now and _debris(copy) == [], (k, _debris(copy))
        shutil.rmtree(copy)
    # the kills before the commit leave the old data, those after it the new one
    assert len(seen) > 3 and seen == sorted(seen) and seen[0] is False and seen[-1] is True, seen


def test_debris_of_the_two_rename_replace_is_recovered(tmp_path):
    """Stores written by earlier clipclap versions replaced a group by two renames; killed in
    between, the dataset was gone, kept in `.d.old-X` with the new copy in `.d.staging-X`. The
    next open for writing brings back the complete copy and removes the rest."""
    store = tmp_path / "s.zarr"
    fs = FeatureStore(store)
    fs.write_dataset("d", _bundle(seed=1), {})
    [key] = [p.name for p in store.iterdir() if p.name.startswith("d~")]
    os.rename(store / key, store / ".d.old-0123abcd")
    (store / ".d.staging-4567cdef").mkdir()  # the new copy, killed before it was complete
    (store / ".d.staging-4567cdef" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    assert FeatureStore(store).datasets() == []
    FeatureStore(store).open_for_writing()
    assert FeatureStore(store).datasets() == ["d"] and _debris(store) == []
    np.testing.assert_array_equal(FeatureStore(store).read_features("d", "video"), _bundle(seed=1).features["video"])


def test_staging_of_a_live_writer_is_left_alone(tmp_path):
    from clipclap_cli.store.locations import staging_name

    store = tmp_path / "s.zarr"
    FeatureStore(store).write_dataset("d", _bundle(), {})
    live = store / staging_name("e~1")  # this process: alive
    live.mkdir()
    dead = store / f".staging~{DEAD_PID}~{socket.gethostname()}~e~2"
    dead.mkdir()
    FeatureStore(store).open_for_writing()
    assert live.exists() and not dead.exists()


def test_import_killed_between_dataset_and_split_is_repaired(tmp_path):
    """A dataset without its default split (what a kill left with clipclap versions that wrote
    them apart): importing the same data again writes the split instead of saying 'unchanged'."""
    fs = FeatureStore(tmp_path / "s.zarr")
    store_bundle(fs, _entry(), _bundle(seed=1), write_split=False)
    assert fs.split_names("d") == []
    result = store_bundle(fs, _entry(), _bundle(seed=1))
    assert result.unchanged and result.split == "cls_split" and fs.split_names("d") == ["cls_split"]


# ---------------------------------------------------------------- nothing derived is dropped silently

def test_reimport_keeps_what_still_applies(tmp_path):
    fs = FeatureStore(tmp_path / "s.zarr")
    store_bundle(fs, _entry(), _bundle(seed=1))
    fs.write_split("d", "drawn", {p: np.array([3, 4]) for p in PARTITIONS}, {"stage_1_train": [0]}, {"how": "x"})
    fs.write_label_embeddings("d", "clap", np.full((3, 5), 2, np.float32), {"how": "embed"})
    changed = _bundle(seed=2)  # same videos and classes, other features
    result = store_bundle(fs, _entry(), changed)
    assert set(result.kept) == {"split:drawn", "label_embeddings:clap"} and result.dropped == ()
    assert fs.read_split("d", "drawn").indices["stage_1_train"].tolist() == [3, 4]
    assert fs.read_label_embeddings("d", "clap").tolist() == [[2.0] * 5] * 3
    np.testing.assert_array_equal(fs.read_features("d", "video"), changed.features["video"])


def test_reimport_that_would_drop_derived_data_needs_replace(tmp_path):
    fs = FeatureStore(tmp_path / "s.zarr")
    store_bundle(fs, _entry(), _bundle(seed=1))
    fs.write_split("d", "drawn", {p: np.array([3]) for p in PARTITIONS}, {"stage_1_train": [0]}, {})
    fs.write_label_embeddings("d", "clap", np.ones((3, 5), np.float32), {})
    before = tree_digest(tmp_path / "s.zarr")
    fewer = _bundle(n=9, seed=2)  # other videos: the drawn split's indices would point elsewhere
    with pytest.raises(StoreError, match=r"would drop split 'drawn' \(the videos changed\)"):
        store_bundle(fs, _entry(), fewer)
    assert tree_digest(tmp_path / "s.zarr") == before
    result = store_bundle(fs, _entry(), fewer, replace=True)
    assert result.dropped == ("split:drawn",) and result.kept == ("label_embeddings:clap",)
    assert fs.split_names("d") == ["cls_split"]


def test_reimport_through_the_cli_lists_what_it_would_drop(cli, tmp_path):
    from released_tree import write_released_tree

    root = tmp_path / "ucf"
    write_released_tree(root, "UCF", "ucf", "ucf_clip_class_names.csv", "clip_class_name", max_per_class=12)
    store = tmp_path / "s.zarr"
    assert cli("import", "ucf", root, "--store", store).exit_code == 0
    assert cli("split", "ucf", "--split", "mine", "--seen", "30", "--unseen", "10", "--store", store).exit_code == 0
    shutil.rmtree(root)
    write_released_tree(root, "UCF", "ucf", "ucf_clip_class_names.csv", "clip_class_name", max_per_class=11)
    before = tree_digest(store)
    r = cli("import", "ucf", root, "--store", store)
    assert r.exit_code == 1 and "split 'mine'" in r.stderr and "--replace" in r.stderr, r
    assert tree_digest(store) == before
    r = cli("import", "ucf", root, "--store", store, "--replace")
    assert r.exit_code == 0 and "dropped split mine" in r.stderr, r


# ---------------------------------------------------------------- what report reads is checked

@pytest.mark.parametrize(("edit", "says"), [
    (lambda t: t.update(hm=float("nan")), "test hm is nan"),
    (lambda t: t.update(seen=float("inf")), "test seen is inf"),
    (lambda t: t.update(zsl=-5.0), "test zsl is -5.0, outside 0..1"),
    (lambda t: t.update(unseen=1e308), "outside 0..1"),
    (lambda t: t.update(zsl="74.8"), "test zsl is '74.8', not a number"),
    (lambda t: t.update(hm=t["hm"] + 0.05), "does not follow from seen"),
    (lambda t: t.pop("unseen"), "test unseen is None"),
])
def test_report_leaves_out_a_bad_results_file_and_names_it(cli, tmp_path, trained_run, edit, says):
    # a deliberately damaged results file: under damaged/, which the suite's check for NaN in JSON skips
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "damaged"
    shutil.copytree(trained_run, good)
    shutil.copytree(trained_run, bad)
    results = json.loads((bad / "results.json").read_text())
    results["seed"] = 43  # another seed of the same settings: it would join the good run's row
    edit(results["test"])
    (bad / "results.json").write_text(json.dumps(results))
    r = cli("report", tmp_path / "runs", "--format", "json")
    assert r.exit_code == 0, r
    assert f"left out: {bad}: results.json: " in r.stderr and says in r.stderr, r.stderr
    [row] = json.loads(r.stdout)
    assert row["n"] == 1
    expected = json.loads((good / "results.json").read_text())["test"]["hm"] * 100
    assert row["mean"]["hm"] == pytest.approx(expected)


def test_report_of_only_bad_files_is_an_error(cli, tmp_path, trained_run):
    bad = tmp_path / "runs" / "bad"
    shutil.copytree(trained_run, bad)
    (bad / "results.json").write_text('{"test": "x"}')
    r = cli("report", tmp_path / "runs")
    assert r.exit_code == 1 and "no run under" in r.stderr and "left out" in r.stderr, r

