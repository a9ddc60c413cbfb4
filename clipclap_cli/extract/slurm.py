"""`extract --launcher slurm --shards N`: the shards of an extraction as the tasks of one SLURM
job array, through submitit (the `clipclap[cluster]` extra; the pieces every SLURM launcher
shares are in `clipclap_cli/cluster.py`).

Task i runs `clipclap extract ... --shard i/N`, the command's own local path, in a fresh
process: it writes its videos' features to the store's working group as a torchrun shard does,
and whichever shard finishes last writes the dataset (`extraction.py`). So the store a job
array makes is the one the same shards make here. submitit's files (job scripts, pickles,
logs) and jobs.json, which records each shard's task, go in a folder beside a folder store
(`<store's folder>/.slurm/extract-<dataset>/`; beside the current directory for an object
store's URL). The same command run again follows shards still queued or running, resubmits the
shards whose videos are still pending (a shard's own resume skips the videos done), and reports
a finished extraction as done, submitting nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipclap_cli.cluster import JOBS, LIVE, SlurmSettings, queue, submit_array, succeeded, task_error
from clipclap_cli.errors import ClipclapError, RunError
from clipclap_cli.extract.extraction import Extraction
from clipclap_cli.extract.preview import shard_shares
from clipclap_cli.files import write_json
from clipclap_cli.store.extraction_group import FAILED, PENDING


class ExtractShard:
    """What array task `index` of `count` runs: `clipclap extract ARGV --shard index/count` in
    a new process (its output in the task's log). A checkpointable callable for submitit:
    preempted or out of time, it is requeued and the shard resumes where its chunks stopped.
    The command's failure is the task's, with the command's last line of error."""

    def __init__(self, argv: list[str], index: int, count: int):
        self.argv, self.index, self.count = argv, index, count

    def __call__(self) -> str:
        cmd = [sys.executable, "-m", "clipclap_cli", "extract", *self.argv, "--shard", f"{self.index}/{self.count}"]
        env = dict(os.environ)
        if env.get("SLURM_CPUS_PER_TASK") and not env.get("OMP_NUM_THREADS"):
            # the task's cores, not the node's: without cgroups torch would start a thread per core it sees
            env["OMP_NUM_THREADS"] = env["SLURM_CPUS_PER_TASK"]
        done = subprocess.run(cmd, stdout=sys.stdout, stderr=subprocess.PIPE, text=True, check=False, env=env)
        sys.stderr.write(done.stderr)
        sys.stderr.flush()
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            raise RunError(f"shard {self.index}/{self.count}: "
                           + (lines[-1].removeprefix("Error: ") if lines else f"exit status {done.returncode}"))
        return f"shard {self.index}/{self.count} done"

    def checkpoint(self, *args, **kwargs):
        """submitit calls this before the task is requeued: the same shard, to run again."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def slurm_folder(job: Extraction) -> Path:
    """Where submitit's files and jobs.json go for `job` (see the module's doc)."""
    store = job.store.location
    base = Path(store.recorded()).parent if getattr(store, "path", None) is not None else Path.cwd()
    return base / ".slurm" / f"extract-{job.dataset}"


@dataclass(frozen=True)
class SlurmExtraction:
    """An extraction's `count` shards as the tasks of one SLURM job array (`settings`); with
    `wait`, follows the tasks' states until they end. `say`: one line for the user (stderr)."""

    settings: SlurmSettings
    count: int
    wait: bool = True
    poll: float = 2.0

    def describe(self, job: Extraction, retry_failed: bool = False) -> str:
        """For `--dry-run`: the array that would be submitted (`retry_failed`: the failed videos
        count as pending). Asks SLURM nothing."""
        shares = shard_shares(job, self.count, _pending(job, retry_failed))
        todo = [s["shard"] for s in shares if s["pending"]]
        return (f"launcher: a SLURM job array on {self.settings.partition or 'the default partition'}, "
                f"{len(todo)} task(s) of {self.count} (shards {', '.join(todo) or 'none: nothing to do'})")

    def run(self, job: Extraction, argv: list[str], say: Callable[[str], None]) -> bool:
        """Submit (or follow) the shards not finished; True when the dataset is written."""
        folder = slurm_folder(job)
        jobs = _read(folder / JOBS)
        in_queue = queue()
        live = {int(i): t for i, t in jobs.get("tasks", {}).items() if in_queue.get(t["task"]) in LIVE}
        if live and jobs.get("count") != self.count:
            raise ClipclapError(f"the shards of an earlier --shards {jobs.get('count')} are still queued (SLURM "
                                f"tasks {', '.join(t['task'] for t in live.values())}): rerun with --shards "
                                f"{jobs.get('count')}, or scancel them")
        if not live and _written(job):
            say(f"{job.dataset}: extraction done, the dataset is in the store {job.store}; nothing submitted")
            return True
        shares = shard_shares(job, self.count, _pending(job))
        new = [i for i, s in enumerate(shares) if s["pending"] and i not in live]
        if not new and not live:  # every video done or failed, the dataset not written: one shard writes it
            new = [0]
        if new:
            tasks = [ExtractShard(argv, i, self.count) for i in new]
            submitted = submit_array(folder, f"clipclap-extract-{job.dataset}", self.settings, tasks, "extract")
            jobs = {"count": self.count, "tasks": {str(i): t for i, t in jobs.get("tasks", {}).items()
                                                   if jobs.get("count") == self.count} | {
                str(i): t for i, t in zip(new, submitted, strict=True)}}
            write_json(folder / JOBS, jobs)
            live |= dict(zip(new, submitted, strict=True))
            say(f"submitted SLURM job {submitted[0]['task'].split('_')[0]}: {len(new)} task(s), shards "
                + ", ".join(f"{i}/{self.count}" for i in new))
        if not self.wait:
            for i, task in sorted(live.items()):
                state = in_queue.get(task["task"], "pending").lower()
                say(f"shard {i}/{self.count} (SLURM task {task['task']}): {state}")
            say("the same command again follows the tasks, reports the finished extraction and resubmits the "
                "shards that failed")
            return False
        self._follow(live, say)
        if _written(job):
            status, _ = job.status_to_come()
            failed = int(np.any([st == FAILED for st in status.values()], axis=0).sum())
            say(f"{job.dataset}: {len(job.samples) - failed} videos extracted, {failed} failed -> {job.store}"
                + (" (rerun with --retry-failed to try those again)" if failed else ""))
            return True
        raise RunError(f"the dataset is not written yet: rerun the same command to resubmit the shards with "
                       f"videos still to do (logs in {folder})")

    def _follow(self, live: dict[int, dict], say: Callable[[str], None]) -> None:
        """One line for each change of a task's state until every task left the queue; one for
        each task that failed, with its error and log."""
        seen: dict[int, str] = {}
        while live:
            in_queue = queue()
            for i, task in sorted(live.items()):
                state = in_queue.get(task["task"])
                if state in LIVE:
                    if seen.get(i) != state:
                        seen[i] = state
                        say(f"shard {i}/{self.count} (SLURM task {task['task']}): {state.lower()}")
                    continue
                del live[i]
                if succeeded(task):
                    say(f"shard {i}/{self.count} (SLURM task {task['task']}): done")
                else:
                    say(f"shard {i}/{self.count} (SLURM task {task['task']}): failed: {task_error(task)}; "
                        f"log: {task['log']}")
            if live:
                time.sleep(self.poll)


def _pending(job: Extraction, retry_failed: bool = False) -> np.ndarray:
    """One flag a video: whether some encoder still has it to do (read, never written), the
    failed ones too with `retry_failed`."""
    status, _ = job.status_to_come()
    rows = np.stack(list(status.values())) if status else np.zeros((0, len(job.samples)), dtype=np.int8)
    return np.isin(rows, (PENDING, FAILED) if retry_failed else (PENDING,)).any(axis=0)


def _written(job: Extraction) -> bool:
    """Whether the extraction is finished: its dataset is in the store, made as `job` makes it,
    with no video left to do and no working group left over."""
    status, found_in = job.status_to_come()
    return found_in.startswith("the store's dataset") and not any((st == PENDING).any() for st in status.values())


def _read(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.exists() else {}
