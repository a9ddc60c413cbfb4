"""The scheduler itself (train/scheduler.py, train/launchers.py): the events of a tiny plan trained
in this process, in order, and a failing run that fails alone while the others finish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipclap_cli.data.datasets_toml import load_catalog
from clipclap_cli.errors import ClipclapError
from clipclap_cli.runs.plan import RunRequest
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.train.launchers import InProcess, OnRanks, Workers, here, launcher_for
from clipclap_cli.train.scheduler import (
    Epoch,
    Failed,
    Finished,
    Launched,
    Outcome,
    Planned,
    Reused,
    Started,
    Step,
    planned,
    renumber,
    schedule,
)


def _plan(pm, demo_store, runs: Path, heads=("clipclap",), seeds=1):
    store = FeatureStore(str(demo_store))
    request = RunRequest(heads=heads, seeds=seeds, epochs=1, batches_per_epoch=2)
    return store, planned(store, load_catalog(pm, None).get("demo"), request, runs, pm=pm).plan


def _events(plan, store, pm, launcher, stages=(1, 2)):
    events, reported = [], []
    outcome = schedule(plan, store, stages, launcher, pm, None, events.append, reported.append)
    assert events[0] == Planned(plan)  # first, whatever the launcher: the renderer's runs
    return events[1:], outcome, reported


def test_one_run_reports_started_steps_epochs_and_finished_in_order(pm, demo_store, tmp_path):
    store, plan = _plan(pm, demo_store, tmp_path)
    events, outcome, reported = _events(plan, store, pm, InProcess())
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Launched", "Started", "Step", "Step", "Epoch", "Started", "Step", "Step", "Epoch", "Finished"]
    assert events[0] == Launched((0,))
    assert events[1] == Started(0, 1, 0, 1, 2) and events[5] == Started(0, 2, 0, 1, 2)
    assert [e.batches for e in events if isinstance(e, Step)] == [1, 2, 1, 2]
    assert [(e.stage, e.record["epoch"]) for e in events if isinstance(e, Epoch)] == [(1, 1), (2, 1)]
    path = plan[0][0]
    assert events[-1] == Finished(0, json.loads((path / "results.json").read_text()))
    assert outcome == Outcome((path,), 0, 1) and reported == [(path,)]
    outcome.check()  # nothing failed
    # again: both stages reused as they are, the run evaluated again
    events, outcome, _ = _events(plan, store, pm, InProcess())
    assert [type(e) for e in events] == [Launched, Reused, Reused, Finished]
    assert [e.stage for e in events[1:3]] == [1, 2] and events[1].result["epochs"] == 1
    assert outcome.finished == (path,)


def test_a_failing_run_fails_alone_and_the_others_finish(pm, demo_store, tmp_path):
    store, plan = _plan(pm, demo_store, tmp_path, heads=("clipclap", "zeroshot"), seeds=2)
    assert [(p.parent.name.split(",")[0], p.name) for p, _ in plan] == [
        ("clipclap", "seed42"), ("clipclap", "seed43"), ("zeroshot", "seed42"), ("zeroshot", "seed43")]
    broken = plan[1][0]  # a run folder clipclap made, whose config cannot be read
    broken.mkdir(parents=True)
    (broken / ".clipclap-run").write_text('{"run_format": 2}')
    (broken / "config.json").write_text('{"spec": {}}')
    events, outcome, reported = _events(plan, store, pm, InProcess())
    launched = [e for e in events if isinstance(e, Launched)]
    assert launched == [Launched((0, 1), stacked=True), Launched((2,)), Launched((3,))]
    ends = [e for e in events if isinstance(e, Finished | Failed)]
    assert [type(e) for e in ends] == [Finished, Failed, Finished, Finished]
    assert [e.run for e in ends] == [0, 1, 2, 3] and "config.json" in ends[1].error
    assert not any(isinstance(e, Started | Epoch) and e.run == 1 for e in events)
    # each run's events come between its launch and its end
    for run in (0, 2, 3):
        mine = [i for i, e in enumerate(events) if getattr(e, "run", None) == run]
        assert isinstance(events[mine[0]], Started) and isinstance(events[mine[-1]], Finished)
    finished = (plan[0][0], plan[2][0], plan[3][0])
    assert outcome == Outcome(finished, 1, 4) and reported == [finished]
    with pytest.raises(ClipclapError, match=r"^1 of 4 runs failed \(above\); rerun the same command to retry them$"):
        outcome.check()


def test_without_stacking_a_run_alone_raises_its_failure(pm, demo_store, tmp_path):
    """In this process a run trained alone stops the work with its error, as `train` always did."""
    from clipclap_cli.errors import RunError

    store, plan = _plan(pm, demo_store, tmp_path, seeds=2)
    (plan[0][0]).mkdir(parents=True)
    (plan[0][0] / "stray.txt").write_text("not a run")
    with pytest.raises(RunError):
        _events(plan, store, pm, InProcess(stack=False))
    assert not (plan[1][0] / "results.json").exists()


def test_the_launcher_is_picked_from_the_options():
    from clipclap_cli.train.distributed import Ranks

    assert here(3, jobs=2) == Workers(2) and here(1, jobs=2) == InProcess() and here(3) == InProcess()
    assert launcher_for(1, False, None, 4) == InProcess(stack=False)
    ranks = Ranks(1, 2, 0)
    assert launcher_for(2, True, ranks, 4) == OnRanks(ranks, 2, True)
    # a rank's events are numbered as in the whole plan
    assert renumber(Launched((0, 1), stacked=True), (1, 3)) == Launched((1, 3), stacked=True)
    assert renumber(Step(1, 5), (1, 3)) == Step(3, 5)
    failed = Outcome((), 2, 5, " on the ranks")
    with pytest.raises(ClipclapError, match=r"^2 of 5 runs failed on the ranks"):
        failed.check()
    with pytest.raises(ClipclapError, match=r"^its own error$"):
        Outcome((), 1, 5, " on the ranks", "its own error").check()
