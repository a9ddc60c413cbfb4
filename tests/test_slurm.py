"""`train --launcher slurm` against a real SLURM: the one-node cluster of tests/slurm_cluster.py
(started when it is not up; skipped, with the way to enable it, only without sbatch and root).

A grid trained as array tasks has the bytes of the same grid trained here; a task killed
mid-run is resubmitted by the same command and resumes from its checkpoint; a task that fails
fails its run alone and names its log; what SLURM cannot do is refused in one line before any
write. Runs use `--threads 1` on both sides: a run's numbers depend on its CPU thread count.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slurm_cluster
from helpers import SMOKE, one_error_line, train_fast
from slurm_cluster import OTHER

# one worker runs every SLURM test, one after another: tasks of two tests at once would wait for
# each other's cores on the one node, and a wait is what these tests time
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]
slurm = slurm_cluster.slurm  # the fixture: a one-node cluster, up

SLURM = ("--launcher", "slurm", "--cpus", "1")
#: a run long enough that its task is killed mid-run: the test kills the task's processes as soon
#: as its first epoch is written, which takes it a fraction of a second, and the five epochs after
#: it take longer than that. Small batches: what is compared is a killed and resumed run with one
#: trained here.
LONGER_EPOCHS = 6
LONGER = ("--epochs", str(LONGER_EPOCHS), "--batches-per-epoch", "30", "--batch-size", "8")
BROKEN_HEAD = '''
from clipclap_cli import hookimpl
from clipclap_plugins.clipclap_head import ClipClapHead


class BrokenHead(ClipClapHead):
    head_id = "broken-on-purpose"

    def loss(self, batch, text):
        raise RuntimeError("this head is broken on purpose")


@hookimpl
def register_heads(register):
    register(BrokenHead)
'''


def _results(runs: Path) -> dict[str, bytes]:
    return {str(p.relative_to(runs)): p.read_bytes() for p in sorted(runs.rglob("results.json"))}


def _jobs(runs: Path) -> dict:
    return json.loads((runs / ".slurm" / "jobs.json").read_text())


#: how long a test waits for a task (queued behind others, started, past its first epoch): long,
#: since a loaded CI machine runs the tasks several times slower than an idle one
PATIENCE_S = 900


def _until(check, what: str, timeout: float = PATIENCE_S):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}; {slurm_cluster.describe()}"
        time.sleep(0.2)
    return found


def _environments() -> dict[int, set[bytes]]:
    """Every process's environment (those this test may read), as a set of VAR=VALUE."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                found[int(proc.name)] = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _kill_task(task: str) -> int:
    """kill -9 of every process of task JOB or JOB_TASK (the one node is this machine), as the
    out-of-memory killer or a lost node would end it: at once, wherever its run stands. (`scancel
    --signal=KILL` reaches the batch script at once but the step that trains only when SLURM ends
    the job, a second or more later on a loaded machine, by which time a short run has finished.)
    Its batch script names the array task; the step (srun's) carries only the task's own job id.
    How many processes it killed."""
    job, _, index = task.partition("_")
    # the test cluster's jobs only (slurm_cluster.py's ClusterName), should the suite itself run
    # in a job of a real cluster, whose variables its processes and the test daemons inherit
    environments = {pid: env for pid, env in _environments().items() if b"SLURM_CLUSTER_NAME=clipclap" in env}
    if index:
        wanted = {f"SLURM_ARRAY_JOB_ID={job}".encode(), f"SLURM_ARRAY_TASK_ID={index}".encode()}
        ids = {v for env in environments.values() if wanted <= env for v in env if v.startswith(b"SLURM_JOB_ID=")}
    else:
        ids = {f"SLURM_JOB_ID={job}".encode()}
    killed = 0
    for pid, env in environments.items():
        if env & ids and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _queued(task: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return task in out.split()


def test_a_grid_as_array_tasks_equals_the_grid_trained_here(slurm, cli, demo_store, tmp_path):
    grid = ("--head", "clipclap,devise", "--seeds", "2", "--threads", "1")
    r = train_fast(cli, demo_store, tmp_path / "slurm", *grid, *SLURM, schedule=SMOKE)
    assert r.exit_code == 0, r
    assert "SLURM job" in r.stderr
    assert train_fast(cli, demo_store, tmp_path / "here", *grid, schedule=SMOKE).exit_code == 0
    there = _results(tmp_path / "slurm")
    assert len(there) == 4 and there == _results(tmp_path / "here")
    assert len({task["task"] for task in _jobs(tmp_path / "slurm").values()}) == 3  # a stack, two alone
    recorded = (tmp_path / "slurm" / ".slurm" / "jobs.json").read_bytes()
    again = train_fast(cli, demo_store, tmp_path / "slurm", *grid, *SLURM, schedule=SMOKE)
    assert again.exit_code == 0 and "already trained" in again.stderr, again
    assert (tmp_path / "slurm" / ".slurm" / "jobs.json").read_bytes() == recorded  # nothing submitted


def test_a_killed_task_is_resubmitted_and_resumes(slurm, cli, demo_store, tmp_path):
    """Killed after its first epoch, the task's run trains on from there when the same command
    runs again, to the files of the run trained here without a stop (stage 1: the files compared)."""
    args = ("--stage", "1", "--threads", "1", *SLURM, "--partition", OTHER)
    r = train_fast(cli, demo_store, tmp_path / "runs", *args, "--no-wait", schedule=LONGER)
    assert r.exit_code == 0, r
    [(folder, job)] = _jobs(tmp_path / "runs").items()
    assert f"SLURM task {job['task']}: pending" in r.stderr
    metrics = Path(folder) / "stage1" / "metrics.jsonl"
    _until(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, "the first epoch")
    assert _kill_task(job["task"]) > 0, f"no process of task {job['task']} found"
    _until(lambda: not _queued(job["task"]), "the task to leave the queue")
    before = metrics.read_text().splitlines()
    assert len(before) < LONGER_EPOCHS and not (Path(folder) / "stage1" / "result.json").exists()

    again = train_fast(cli, demo_store, tmp_path / "runs", *args, schedule=LONGER)
    assert again.exit_code == 0, again
    assert _jobs(tmp_path / "runs")[folder]["task"] != job["task"]  # resubmitted
    after = metrics.read_text().splitlines()
    assert len(after) == LONGER_EPOCHS and after[:len(before)] == before  # resumed: the epochs done stay as they were
    assert train_fast(cli, demo_store, tmp_path / "here", "--stage", "1", "--threads", "1",
                      schedule=LONGER).exit_code == 0
    here = tmp_path / "here" / Path(folder).relative_to(tmp_path / "runs")
    for name in ("result.json", "final.safetensors", "best.safetensors"):
        assert (Path(folder) / "stage1" / name).read_bytes() == (here / "stage1" / name).read_bytes(), name


@pytest.fixture
def broken_head(pm, tmp_path, monkeypatch):
    """A head plugin module that raises in its loss, registered in `pm` (a module: the task
    imports it again from its folder)."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "broken_task_head.py").write_text(BROKEN_HEAD)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("broken_task_head")
    pm.register(module, name="broken_task_head")
    yield "broken-on-purpose"
    sys.modules.pop("broken_task_head", None)


def test_a_failing_task_fails_its_run_alone_and_names_its_log(slurm, cli, broken_head, demo_store, tmp_path):
    """Submitted with --no-wait, then followed by the same command (which submits nothing more)."""
    runs, grid = tmp_path / "runs", ("--head", f"clipclap,{broken_head}", *SLURM)
    assert train_fast(cli, demo_store, runs, *grid, "--no-wait", schedule=SMOKE).exit_code == 0
    submitted = _jobs(runs)
    r = train_fast(cli, demo_store, runs, *grid, schedule=SMOKE)
    assert r.exit_code == 1, r
    assert _jobs(runs) == submitted
    assert "1 of 2 runs failed on SLURM" in r.stderr
    jobs = _jobs(runs)
    [failed] = [Path(f) for f in jobs if broken_head in f]
    [fine] = [Path(f) for f in jobs if broken_head not in f]
    log = jobs[str(failed)]["log"]
    assert "this head is broken on purpose" in Path(log).read_text()
    assert log in "".join(r.stderr.split()) and "broken on purpose" in r.stderr  # however the line wraps
    assert (fine / "results.json").exists() and not (failed / "results.json").exists()


@pytest.mark.parametrize("case", ["no sbatch", "unknown partition", "partition from the datasets file",
                                  "missing extra", "refused by sbatch", "jobs"])
def test_what_slurm_cannot_do_is_one_line_and_nothing_written(slurm, cli, demo_store, tmp_path, monkeypatch, case):
    extra: tuple[str, ...] = ()
    if case == "no sbatch":
        monkeypatch.setenv("PATH", str(tmp_path))
    elif case == "unknown partition":
        extra = ("--partition", "nowhere")
    elif case == "partition from the datasets file":
        (tmp_path / "lab.toml").write_text('[slurm]\npartition = "nowhere"\ntime = 30\n')
        extra = ("--datasets", tmp_path / "lab.toml")
    elif case == "missing extra":
        monkeypatch.setitem(sys.modules, "submitit", None)
    elif case == "jobs":
        extra = ("--jobs", "2")
    else:
        extra = ("--mem-gb", "100000")  # more memory than the node has
    r = train_fast(cli, demo_store, tmp_path / "runs", *SLURM, *extra, schedule=SMOKE)
    line = one_error_line(r)
    expected = {"no sbatch": "no sbatch on PATH", "unknown partition": "no partition 'nowhere'",
                "partition from the datasets file": "no partition 'nowhere'",
                "missing extra": "pip install 'clipclap[cluster]'", "refused by sbatch": "SLURM refused the job",
                "jobs": "--jobs 2 trains runs side by side"}
    assert expected[case] in line
    assert not (tmp_path / "runs").exists()


def test_the_slurm_table_gives_settings_that_the_command_line_overrides(tmp_path):
    from clipclap_cli.cli._options import cluster_settings
    from clipclap_cli.errors import ConfigError

    def slurm_settings(datasets_file, **given):  # what `--launcher slurm` reads, the options `given`
        return cluster_settings("slurm", datasets_file, {}, **given)

    lab = tmp_path / "lab.toml"
    lab.write_text('[slurm]\npartition = "gpu"\ntime = 30\nsbatch = ["--account=lab", "--exclusive"]\n')
    settings = slurm_settings(lab, partition="other", time=None, cpus=4, sbatch=())
    assert (settings.partition, settings.time, settings.cpus) == ("other", 30, 4)
    assert settings.parameters() == {"slurm_partition": "other", "timeout_min": 30, "cpus_per_task": 4,
                                     "slurm_signal_delay_s": 90,
                                     "slurm_additional_parameters": {"account": "lab", "exclusive": True}}
    for text, problem in (("tme = 3", "tme: unknown"), ('time = "30"', "time: expected a whole number"),
                          ('sbatch = ["account=lab"]', 'sbatch: expected a list of "--key=value"')):
        lab.write_text(f"[slurm]\n{text}\n")
        with pytest.raises(ConfigError, match=problem):
            slurm_settings(lab)
