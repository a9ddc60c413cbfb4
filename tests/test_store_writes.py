"""Every write lands or is refused (issue 39): versions the store orders itself, one writer at a
time, writes that stay inside the store, and `verify` naming what the store does not read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clipclap_cli.store.feature_store import WRITER_LOCK, FeatureStore
from clipclap_cli.store.locations import RECORD
from helpers import tree_digest
from prestarted import Process, clipclap
from released_tree import write_released_tree

SMALL = ["Archery", "BalanceBeam", "HandStandPushups", "Drumming", "Fencing", "Bowling",
         "ApplyEyeMakeup", "Basketball", "BlowDryHair", "BoxingPunchingBag", "CleanAndJerk"]


def _small_tree(root: Path, seed: int) -> Path:
    """A UCF-layout tree of a few classes; trees of other seeds hold the same videos, other features."""
    write_released_tree(root, "UCF", "ucf", "ucf_clip_class_names.csv", "clip_class_name", seed=seed,
                        max_per_class=2, classes=SMALL)
    for txt in (root / "class-split" / "cls_split").glob("*.txt"):
        txt.write_text("\n".join(s for s in txt.read_text().split("\n") if s.strip() in SMALL) + "\n")
    return root


def _clipclap(*args, **kwargs) -> Process:
    return clipclap(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _key(store: Path, dataset: str) -> str:
    return FeatureStore(store).location.record("")["current"][dataset]


# ------------------------------------------------------------------ 1. versions the store orders
def test_a_users_copy_of_a_version_is_never_read_nor_removed(cli, demo_copy):
    """`cp -a store/demo~KEY store/demo~backup` (a user's backup): the store goes on reading its
    own version, a new split and a replace land in the store's version, the copy stays as it was."""
    key = _key(demo_copy, "demo")
    shutil.copytree(demo_copy / key, demo_copy / "demo~backup")
    backup = tree_digest(demo_copy / "demo~backup")
    r = cli("split", "demo", "--seen", "30", "--unseen", "6", "--split", "mine", "--store", demo_copy)
    assert r.exit_code == 0, r
    assert "mine" in FeatureStore(demo_copy).split_names("demo")
    r = cli("demo", "--no-train", "--seed", "9", "--replace", "--store", demo_copy)
    assert r.exit_code == 0, r
    printed = int(r.stderr.split("demo: ")[1].split(" videos")[0])
    assert len(FeatureStore(demo_copy).read_videos("demo")[0]) == printed
    assert tree_digest(demo_copy / "demo~backup") == backup
    r = cli("verify", "--store", demo_copy, "--json")
    [row] = [row for row in json.loads(r.stdout) if row["array"] == "demo~backup"]
    assert row["status"] == "foreign" and row["repair"] == ""


def test_a_clock_that_runs_ahead_or_behind_changes_nothing(tmp_path, monkeypatch):
    """The newest write is the one read, whatever the writers' clocks said."""
    store = FeatureStore(tmp_path / "s.zarr")
    clocks = [time.time_ns() + 10**18, time.time_ns() - 10**18, time.time_ns()]
    for i, clock in enumerate(clocks):
        monkeypatch.setattr(time, "time_ns", lambda clock=clock: clock)
        FeatureStore(tmp_path / "s.zarr").write_dataset("d", _bundle(i), {})
        assert FeatureStore(tmp_path / "s.zarr").read_features("d", "video").tolist() == \
            _bundle(i).features["video"].tolist()
    assert store.location.record("")["current"]["d"] == "d~3"
    assert sorted(p.name for p in (tmp_path / "s.zarr").iterdir()) == ["d~3", "zarr.json"]


def _bundle(seed: int):
    from clipclap_cli.api import FeatureBundle

    rng = np.random.default_rng(seed)
    return FeatureBundle(classes=["a", "b", "c"], prompt_names=["a", "b", "c"], ids=["x", "y", "z"],
                         labels=np.array([0, 1, 2]), features={"video": rng.standard_normal((3, 4)).astype(np.float32)},
                         label_embeddings={}, partition=np.array([0, 1, 2], dtype=np.int8), class_splits={},
                         provenance={})


def test_a_store_of_clipclap_0_3_opens_and_gets_its_record_on_the_next_write(tmp_path):
    """Keys of 0.3's form (`name~<time>-<random>`, no record) are read as 0.3 read them; a write
    gives the group its record and removes the superseded versions of that form."""
    import zarr

    store = tmp_path / "s.zarr"
    FeatureStore(store).write_dataset("d", _bundle(1), {})
    old = store / "d~1"
    root = zarr.open_group(store, mode="r+")
    attrs = dict(root.attrs)
    attrs.pop(RECORD)
    root.attrs.clear()
    root.attrs.update(attrs)
    os.rename(old, store / "d~00017641860000000000-3fa2c1d0")
    shutil.copytree(store / "d~00017641860000000000-3fa2c1d0", store / "d~00017641860000000001-0000aaaa")
    zarr.open_group(store / "d~00017641860000000001-0000aaaa", mode="r+").attrs.update({"complete": False})
    assert FeatureStore(store).read_features("d", "video").tolist() == _bundle(1).features["video"].tolist()
    FeatureStore(store).write_split("d", "s", {p: np.array([0]) for p in
                                               ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen",
                                                "stage_2_train", "stage_2_test_seen", "stage_2_test_unseen")},
                                    {"stage_1_train": [0]}, {})
    FeatureStore(store).write_dataset("d", _bundle(2), {}, keep=("split:s",))
    assert FeatureStore(store).split_names("d") == ["s"]
    assert sorted(p.name for p in store.iterdir()) == ["d~1", "zarr.json"]


# ------------------------------------------------------------------ 2. one writer at a time
_HOLDER = """
import sys, time
from clipclap_cli.store.feature_store import FeatureStore
sys.argv = ["clipclap", "split", "demo", "--split", "theirs"]
fs = FeatureStore(sys.stdin.readline().strip())
with fs.writer():
    print("held", flush=True)
    time.sleep(float(sys.stdin.readline()))
"""


def test_a_second_writer_waits_naming_the_holder_or_gives_up(cli, demo_copy):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    holder.stdin.write(f"{demo_copy}\n3\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "held"
    before = tree_digest(demo_copy)
    r = cli("split", "demo", "--seen", "30", "--unseen", "6", "--split", "mine", "--store", demo_copy, "--wait", "0")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r
    assert f"{socket.gethostname()} {holder.pid} (clipclap split demo --split theirs)" in r.stderr, r
    assert "--wait" in r.stderr
    assert {k: v for k, v in tree_digest(demo_copy).items() if k != WRITER_LOCK} == \
        {k: v for k, v in before.items() if k != WRITER_LOCK}
    started = time.monotonic()
    r = cli("split", "demo", "--seen", "30", "--unseen", "6", "--split", "mine", "--store", demo_copy, "--wait", "60")
    assert r.exit_code == 0, r
    assert f"waiting for another command that writes the store {demo_copy}: {socket.gethostname()} {holder.pid}" \
        in r.stderr
    assert time.monotonic() - started >= 1.0 and holder.wait(30) == 0
    assert "mine" in FeatureStore(demo_copy).split_names("demo")


def test_writers_against_each_other_lose_nothing(tmp_path):
    """Imports that rewrite a dataset (keeping its splits), splits of it, demo generations into
    the same root, run against each other round after round: every command that exited 0 left
    its data (a split is there; a dataset holds one of the contents written)."""
    trees = [_small_tree(tmp_path / f"tree{seed}", seed) for seed in (0, 1)]
    store = tmp_path / "s.zarr"
    env = dict(os.environ, CLIPCLAP_STORE=str(store))
    assert _clipclap("import", "ucf", trees[0], env=env).wait() == 0
    video = {}
    for i, tree in enumerate(trees):
        scratch = tmp_path / f"one{i}.zarr"
        assert _clipclap("import", "ucf", tree, "--store", scratch).wait() == 0
        video[i] = FeatureStore(scratch).read_features("ucf", "video").tolist()
    landed = []
    for round_ in range(3):
        commands = {
            "import": _clipclap("import", "ucf", trees[(round_ + 1) % 2], env=env),
            # (seen, unseen, seed) that draw scorable splits of the small tree's few videos
            "split-a": _clipclap("split", "ucf", "--seen", "3", "--unseen", "2", "--seed", (2, 3, 5)[round_],
                                 "--split", f"a{round_}", env=env),
            "split-b": _clipclap("split", "ucf", "--seen", "4", "--unseen", "3", "--seed", "3",
                                 "--split", f"b{round_}", env=env),
            "demo": _clipclap("demo", "--no-train", "--seed", round_ % 2, "--replace", env=env),
        }
        for name, process in commands.items():
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, (round_, name, stderr)
            if name.startswith("split"):
                landed.append(f"{name[-1]}{round_}")
        fs = FeatureStore(store)
        assert set(landed) <= set(fs.split_names("ucf")), (round_, landed, fs.split_names("ucf"))
        assert fs.read_features("ucf", "video").tolist() in (video[0], video[1])
        assert fs.datasets() == ["demo", "ucf"]
    rows = json.loads(_clipclap("verify", "--json", env=env).communicate()[0])
    assert [r for r in rows if r["status"] not in ("ok",)] == []


# ------------------------------------------------------------------ writes stay inside the store
def test_a_link_inside_the_store_is_never_written_through(cli, demo_copy, tmp_path):
    """A dataset's `splits/` replaced by a link to a folder outside the store: a split write is
    refused in one line and nothing is written outside."""
    key = _key(demo_copy, "demo")
    outside = tmp_path / "elsewhere"
    shutil.copytree(demo_copy / key / "splits", outside)
    shutil.rmtree(demo_copy / key / "splits")
    (demo_copy / key / "splits").symlink_to(outside)
    before = tree_digest(outside)
    r = cli("split", "demo", "--seen", "30", "--unseen", "6", "--split", "mine", "--store", demo_copy)
    assert r.exit_code == 1 and "link" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r
    assert tree_digest(outside) == before


# ------------------------------------------------------------------ 7. verify
def test_verify_names_what_the_store_does_not_read_and_clean_removes_its_own(cli, demo_copy):
    key = _key(demo_copy, "demo")
    (demo_copy / key / "features" / "Thumbs.db").write_bytes(b"\0" * 10)
    other_host = demo_copy / ".staging~123~another-host~demo~7"
    other_host.mkdir()
    (other_host / "zarr.json").write_text("{}")
    dead = demo_copy / f".staging~{2**22 + 12345}~{socket.gethostname()}~demo~8"
    dead.mkdir()
    r = cli("verify", "--store", demo_copy, "--json")
    assert r.exit_code == 0, r
    rows = {row["array"]: row for row in json.loads(r.stdout)}
    assert rows[f"{key}/features/Thumbs.db"]["status"] == "foreign"
    assert rows[other_host.name]["status"] == "other host" and " old" in rows[other_host.name]["problem"]
    assert rows[dead.name]["status"] == "debris"
    assert not any(row["status"] == "damaged" for row in rows.values())
    r = cli("verify", "--store", demo_copy, "--clean")
    assert r.exit_code == 0, r
    assert not other_host.exists() and not dead.exists()
    assert (demo_copy / key / "features" / "Thumbs.db").exists()  # not the store's to remove


def test_verify_finds_a_chunk_copied_from_another_store(cli, demo_store, tmp_path):
    """Two stores of the demo, other seeds: a chunk of one copied over the other's passes its
    own checksum, and the content digest recorded at commit finds it."""
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    shutil.copytree(demo_store, a)
    assert cli("demo", "--no-train", "--seed", "3", "--store", b).exit_code == 0
    ka, kb = _key(a, "demo"), _key(b, "demo")
    chunk_a = sorted(p for p in (a / ka / "features" / "video" / "c").rglob("*") if p.is_file())[0]
    chunk_b = b / kb / chunk_a.relative_to(a / ka)
    assert chunk_b.exists() and chunk_a.read_bytes() != chunk_b.read_bytes()
    shutil.copy(chunk_b, chunk_a)
    r = cli("verify", "--store", a, "--json")
    assert r.exit_code == 1, r
    [row] = [row for row in json.loads(r.stdout) if row["status"] == "damaged"]
    assert row["array"] == "features/video" and "digest" in row["problem"]


def test_a_damaged_record_or_a_missing_current_version_is_named(cli, demo_copy):
    """The record is what readers trust: hand-edited into nonsense it is refused in one line
    naming the file, and a current version removed by hand is damage `verify` names."""
    import zarr

    key = _key(demo_copy, "demo")
    root = zarr.open_group(demo_copy, mode="r+")
    record = dict(root.attrs)[RECORD]
    root.attrs.update({RECORD: {"counter": "three", "current": record["current"]}})
    r = cli("datasets", "show", "demo", "--store", demo_copy)
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r
    assert f"{demo_copy}/zarr.json" in r.stderr and "version record" in r.stderr
    root.attrs.update({RECORD: record})
    shutil.rmtree(demo_copy / key)
    r = cli("verify", "--store", demo_copy, "--json")
    assert r.exit_code == 1, r
    [row] = json.loads(r.stdout)
    assert row["status"] == "damaged" and f"its current version ({key}) is missing" in row["problem"], row


def test_json_printed_to_stdout_is_strict_json(capsys):
    """`--json` output follows the rule of every JSON file clipclap writes: a NaN is refused,
    naming where it is, rather than printed as the bare `NaN` no strict reader parses."""
    from clipclap_cli.cli.console import print_json
    from clipclap_cli.errors import WriteError

    print_json({"a": [1.5, "x"], "p": Path("/tmp")})
    assert json.loads(capsys.readouterr().out) == {"a": [1.5, "x"], "p": "/tmp"}
    with pytest.raises(WriteError, match=r"a\[1\].b is not a finite number"):
        print_json({"a": [0, {"b": float("nan")}]})


def test_evaluate_never_writes_a_run_inside_a_store(cli, demo_copy, trained_run):
    """A run folder copied into a store: `evaluate RUN` (which writes results.json into the run)
    refuses it in one line, and the store is as it was."""
    inside = demo_copy / "myrun"
    shutil.copytree(trained_run, inside)
    before = tree_digest(demo_copy)
    r = cli("evaluate", inside, "--store", demo_copy)
    assert r.exit_code == 1 and "inside the clipclap store" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r
    assert tree_digest(demo_copy) == before
