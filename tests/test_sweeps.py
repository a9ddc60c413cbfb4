"""Sweeps (`train -p KEY=V1,V2`): one run per value of a head parameter or a training setting,
the product of several swept keys, each point in its own folder and report row; a bad value
list is refused in one line before anything is written."""

from __future__ import annotations

import csv
import io

import pytest

from clipclap_cli.data.datasets_toml import load_catalog
from clipclap_cli.runs.plan import RunRequest, sweep_points
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.train.scheduler import planned
from tests.helpers import SMOKE, one_error_line, tree_digest


def test_a_sweep_of_two_values_makes_two_runs_and_two_report_rows(cli, demo_store, tmp_path):
    runs = tmp_path / "runs"
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", runs, *SMOKE, "-p", "lr=1e-3,3e-3")
    assert r.exit_code == 0, r
    folders = sorted(p.parent.parent.name for p in runs.rglob("results.json"))
    assert folders == ["clipclap,epochs=1,lr=0.001,batches-per-epoch=2",
                       "clipclap,epochs=1,lr=0.003,batches-per-epoch=2"], folders
    rows = list(csv.DictReader(io.StringIO(cli("report", runs, "--format", "csv").stdout)))
    labels = sorted(row["method"] for row in rows)
    assert len(labels) == 2 and "lr=0.001" in labels[0] and "lr=0.003" in labels[1], labels


def _plan(demo_store, pm, tmp_path, **request):
    fs = FeatureStore(demo_store)
    entry = load_catalog(pm).get("demo")
    return planned(fs, entry, RunRequest(**request), tmp_path / "runs", pm=pm).plan


def test_two_swept_keys_plan_their_product_and_seeds_per_point(demo_store, pm, tmp_path):
    plan = _plan(demo_store, pm, tmp_path, params=("lr=1e-3,2e-3", "dropout=0.2,0.3"), seeds=2,
                 epochs=1, batches_per_epoch=2)
    assert len(plan) == 8 and len({path for path, _ in plan}) == 8
    points = {(spec.train.lr, spec.params["dropout"]) for _, spec in plan}
    assert points == {(0.001, 0.2), (0.001, 0.3), (0.002, 0.2), (0.002, 0.3)}
    assert {spec.train.seed for _, spec in plan} == {42, 43}
    names = {path.parent.name for path, _ in plan}
    assert any("dropout=0.3" in n and "lr=0.002" in n for n in names), names
    assert not (tmp_path / "runs").exists()


def test_one_value_is_no_sweep_and_a_setting_by_p_equals_its_option(pm):
    [point] = sweep_points(RunRequest(params=("lr=0.001", "dropout=0.2")), pm)
    assert point.lr == 0.001 and point.params == ("dropout=0.2",)
    assert [p.seed for p in sweep_points(RunRequest(params=("seed=1,5",)), pm)] == [1, 5]


@pytest.mark.parametrize("param, says", [
    ("lr=1e-3,,2e-3", "an empty value in the list"),
    ("lr=1e-3,0.001", "the value 0.001 is given twice"),
    ("batch_size=2,x", "expected int"),
    ("nonsense=1,2", "unknown parameter 'nonsense'"),
    ("dropout=0.1,0.10", "the value 0.1 is given twice"),
])
def test_a_bad_value_list_is_refused_in_one_line_and_nothing_is_written(cli, demo_store, tmp_path, param, says):
    before = tree_digest(demo_store)
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", *SMOKE, "-p", param)
    assert says in one_error_line(r), r
    assert not (tmp_path / "runs").exists() and tree_digest(demo_store) == before


def test_a_setting_given_by_its_option_and_by_p_is_refused(cli, demo_store, tmp_path):
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", "--lr", "1e-3", "-p", "lr=1e-2")
    assert "lr is given twice" in one_error_line(r), r
    r = cli("train", "demo", "--store", demo_store, "--run", tmp_path / "run", "-p", "lr=1e-3,1e-2")
    assert "use --runs-dir with a sweep" in one_error_line(r), r
    assert not (tmp_path / "runs").exists() and not (tmp_path / "run").exists()
