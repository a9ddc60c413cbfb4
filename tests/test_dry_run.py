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
