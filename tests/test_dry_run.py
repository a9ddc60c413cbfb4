"""`--dry-run`: the plan of a train (or extract) command, its state and an estimated time,
with nothing written: the store and the runs folder keep every byte."""

from __future__ import annotations

import json
import shutil

from tests.helpers import SMOKE, one_error_line, tree_digest


def _dry(cli, store, runs, *extra):
    r = cli("train", "demo", "--store", store, "--runs-dir", runs, *extra, "--dry-run", "--json")
    assert r.exit_code == 0, r
    return json.loads(r.stdout)


def test_a_dry_run_lists_done_and_pending_runs_and_writes_nothing(cli, demo_store, trained_run):
    runs = trained_run.parent.parent.parent  # the session's SMOKE run: seed 42 done
    before = tree_digest(runs), tree_digest(demo_store)
    plan = _dry(cli, demo_store, runs, *SMOKE, "--seeds", "3")
    assert [(r["seed"], r["state"]) for r in plan["runs"]] == [(42, "done"), (43, "pending"), (44, "pending")]
    assert plan["runs"][0]["folder"] == str(trained_run) and plan["runs"][0]["epochs_left"] == 0
    assert plan["estimated_from"] == "earlier runs" and plan["estimated_seconds"] > 0
    assert plan["runs"][1]["seconds"] > 0 and plan["launcher"].startswith("this process") and plan["tasks"] == 1
    assert (tree_digest(runs), tree_digest(demo_store)) == before


def test_a_run_stopped_after_stage_1_is_partly_done(cli, demo_store, trained_run, tmp_path):
    runs = tmp_path / "runs"
    run = runs / trained_run.relative_to(trained_run.parent.parent.parent)
    shutil.copytree(trained_run, run)  # file times kept: the estimate reads them
    shutil.rmtree(run / "stage2")
    (run / "results.json").unlink()
    [only] = _dry(cli, demo_store, runs, *SMOKE)["runs"]
    assert only["state"] == "partly done" and only["progress"] == "stage 1 done, stage 2 at epoch 0/1", only
    assert only["epochs_left"] == 1 and only["seconds"] > 0


def test_with_no_earlier_run_a_short_measured_step_gives_the_estimate(cli, demo_store, tmp_path):
    before = tree_digest(demo_store)
    plan = _dry(cli, demo_store, tmp_path / "runs", *SMOKE, "-p", "lr=1e-3,2e-3", "--jobs", "2")
    assert plan["estimated_from"] == "a measured step" and plan["estimated_seconds"] > 0
    assert [r["state"] for r in plan["runs"]] == ["pending", "pending"]
    assert plan["launcher"] == "2 worker processes" and plan["tasks"] == 2
    assert not (tmp_path / "runs").exists() and tree_digest(demo_store) == before
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", *SMOKE, "-p", "lr=1e-3,2e-3",
            "--dry-run")
    assert r.exit_code == 0 and "dry run" in r.stdout and "2 pending" in r.stderr, r


def test_a_dry_run_refuses_what_a_real_run_refuses(cli, demo_store, tmp_path):
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", "--head", "nope", "--dry-run")
    assert "nope" in one_error_line(r)
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", "-p", "lr=1,", "--dry-run")
    assert "empty value" in one_error_line(r)
    assert not (tmp_path / "runs").exists()


DATASETS = """
[datasets.mine]
kind = "video-folder"
split = "drawn"
dims = { video = 32, audio = 32, clip = 32, clap = 32 }
"""
TINY = ("-e", "clip:model=clipclap-tiny-clip", "-e", "clap:size=tiny", "--chunk", "2")


def test_extract_dry_run_counts_videos_and_shards_and_writes_nothing(cli, tmp_path):
    from tests.media_files import write_video

    root = tmp_path / "videos"
    for ci, cls in enumerate(["Archery", "Drumming"]):
        (root / cls).mkdir(parents=True)
        for k in range(3):
            write_video(root / cls / f"clip{k}.mp4", seconds=1, channel=ci, freq=300 + 200 * ci + 40 * k)
    (tmp_path / "datasets.toml").write_text(DATASETS)
    store = tmp_path / "s.zarr"
    args = ("extract", "mine", "--videos", root, "--datasets", tmp_path / "datasets.toml", "--store", store, *TINY)
    r = cli(*args, "--shard", "1/2", "--dry-run", "--json")
    assert r.exit_code == 0, r
    plan = json.loads(r.stdout)
    assert (plan["videos"], plan["done"], plan["pending"]) == (6, 0, 6)
    assert [(s["shard"], s["videos"], s["this process"]) for s in plan["shards"]] == [("0/2", 2, False),
                                                                                       ("1/2", 4, True)]
    assert plan["estimated_seconds"] > 0 and not store.exists()
    assert cli(*args, "--shard", "0/2").exit_code == 0  # shard 0 done: the working group records it
    before = tree_digest(store)
    plan = json.loads(cli(*args, "--dry-run", "--json").stdout)
    assert (plan["done"], plan["pending"]) == (2, 4) and "working group" in plan["status_from"]
    r = cli(*args, "--dry-run")
    assert r.exit_code == 0 and "2 done, 0 failed, 4 pending" in r.stdout, r
    assert tree_digest(store) == before
