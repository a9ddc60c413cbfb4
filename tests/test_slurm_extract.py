"""`extract --launcher slurm --shards N` against a real SLURM: the one-node cluster of
tests/slurm_cluster.py (started when it is not up; skipped, with the way to enable it, only
without sbatch and root).

Two shards as the tasks of one job array give the store the same extraction makes in one
process here (tests/test_extract.py's generated videos, tiny random-weight encoders); the same
command again reports the finished extraction and submits nothing; what SLURM cannot do, and
the options that mean nothing without it, are refused in one line before any write.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import slurm_cluster
from clipclap_cli.store.feature_store import FeatureStore
from helpers import one_error_line, tree_digest
from test_extract import _content, _extract, _same, reference, videos  # noqa: F401 - fixtures used by name

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # see test_slurm.py
slurm = slurm_cluster.slurm  # the fixture: a one-node cluster, up

SLURM = ("--launcher", "slurm", "--cpus", "1", "--workers", "0")


def _jobs(store) -> dict:
    return json.loads((store.parent / ".slurm" / "extract-mine" / "jobs.json").read_text())


def test_shards_as_array_tasks_equal_the_extraction_here(slurm, cli, videos, reference, tmp_path):  # noqa: F811
    """Submitted with --no-wait, one task cancelled at once; the same command resubmits its shard
    and follows both to the end; once more, it finds the extraction done."""
    store = tmp_path / "s.zarr"
    r = _extract(videos, store, *SLURM, "--shards", "2", "--no-wait", runner=cli)
    assert r.exit_code == 0 and "shards 0/2, 1/2" in r.stderr, r
    first = _jobs(store)["tasks"]
    assert len({t["task"].split("_")[0] for t in first.values()}) == 1  # one job array
    subprocess.run(["scancel", first["1"]["task"]], check=True)
    r = _extract(videos, store, *SLURM, "--shards", "2", runner=cli)
    assert r.exit_code == 0, r
    assert ": 1 task(s), shards 1/2" in r.stderr and f"shard 0/2 (SLURM task {first['0']['task']}): done" in r.stderr
    assert "mine: 9 videos extracted, 3 failed" in r.stderr
    assert FeatureStore(store).datasets() == ["mine"]
    _same(_content(store), _content(reference[0]))
    submitted = _jobs(store)
    assert submitted["count"] == 2 and submitted["tasks"]["0"] == first["0"] and submitted["tasks"]["1"] != first["1"]
    again = _extract(videos, store, *SLURM, "--shards", "2", runner=cli)
    assert again.exit_code == 0 and "extraction done" in again.stderr and "submitted SLURM" not in again.stderr, again
    assert _jobs(store) == submitted


def test_the_dry_run_says_the_array_it_would_submit(slurm, cli, videos, tmp_path):  # noqa: F811
    r = _extract(videos, tmp_path / "s.zarr", *SLURM, "--shards", "3", "--dry-run", runner=cli)
    assert r.exit_code == 0, r
    assert "a SLURM job array on the default partition, 3 task(s) of 3 (shards 0/3, 1/3, 2/3)" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["shards without slurm", "no-wait without slurm", "no shards", "shard with slurm",
                                  "no sbatch", "unknown partition", "missing extra", "refused by sbatch"])
def test_what_cannot_be_done_is_one_line_and_nothing_written(slurm, cli, videos, tmp_path, monkeypatch,  # noqa: F811
                                                             case):
    args = {"shards without slurm": ("--shards", "2"), "no-wait without slurm": ("--no-wait",),
            "no shards": (*SLURM, "--shards", "0"), "shard with slurm": (*SLURM, "--shard", "0/2"),
            "unknown partition": (*SLURM, "--partition", "nowhere"),
            "refused by sbatch": (*SLURM, "--mem-gb", "100000")}.get(case, SLURM)  # more memory than the node has
    if case == "no sbatch":
        monkeypatch.setenv("PATH", str(tmp_path))
    elif case == "missing extra":
        monkeypatch.setitem(sys.modules, "submitit", None)
    before = tree_digest(tmp_path)
    r = _extract(videos, tmp_path / "s.zarr", *args, runner=cli)
    expected = {"shards without slurm": "are options of --launcher slurm",
                "no-wait without slurm": "are options of --launcher slurm",
                "no shards": "--shards 0: expected a whole number of 1 or more",
                "shard with slurm": "makes the shards itself",
                "no sbatch": "no sbatch on PATH", "unknown partition": "no partition 'nowhere'",
                "missing extra": "pip install 'clipclap[cluster]'", "refused by sbatch": "SLURM refused the job"}
    assert expected[case] in one_error_line(r)
    assert tree_digest(tmp_path) == before and not (tmp_path / ".slurm").exists()
