"""`train --launcher slurm`: each run of a plan (a stack of seeds counts as one) as one task of a
SLURM job array, through submitit (the `clipclap[cluster]` extra).

A task trains its runs with the functions the in-process launcher calls (`train_run`,
`train_stack`) on the store's recorded path, so its files are those of the same runs trained
here. Tasks are requeued on preemption or timeout (submitit signals the task before its time
limit and calls `TrainTask.checkpoint`) and resume from their runs' last epoch checkpoints.
submitit's folders (job scripts, pickles, logs) go under RUNS_DIR/.slurm/; RUNS_DIR/.slurm/jobs.json
records which task trains which run folder, so that the same command run again (after
`--no-wait`, or after Ctrl-C) follows a task still queued or running instead of submitting it
twice, and resubmits the runs whose task ended without finishing them. The queue is read with
squeue (a cluster without an accounting database has no sacct); a task that left the queue is
judged by its runs' files and by the result submitit wrote for it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from clipclap_cli.cluster import JOBS, LIVE, SlurmSettings, check_slurm, submit_array, task_error
from clipclap_cli.cluster import queue as queue_now
from clipclap_cli.errors import ClipclapError, RunError
from clipclap_cli.files import write_json
from clipclap_cli.runs.config import read_json
from clipclap_cli.runs.files import METRICS, RESULTS, stage_folder
from clipclap_cli.runs.folder import stage_result
from clipclap_cli.train.scheduler import (
    Emit,
    Epoch,
    Failed,
    Launched,
    Outcome,
    Queued,
    Report,
    Reused,
    Started,
    Tally,
    Work,
)


class TrainTask:
    """What one array task runs: the requested stages of its runs (one run, or a stack of runs
    that differ only in the seed), with the caller's plugins. A checkpointable callable for
    submitit (its `checkpoint` method): preempted or out of time, it is requeued as it is and the
    runs resume from their epoch checkpoints. A run that fails makes the task fail, its error
    in the task's result and log."""

    def __init__(self, runs: list, store: str, stages: tuple[int, ...], plugins: list, threads: int | None):
        self.runs, self.store, self.stages, self.plugins, self.threads = runs, store, stages, plugins, threads

    def __call__(self) -> list[str]:
        import torch

        from clipclap_cli.plugins.manager import rebuild_plugin_manager
        from clipclap_cli.store.feature_store import FeatureStore
        from clipclap_cli.train.launchers import InProcess

        if os.environ.get("SLURM_CPUS_PER_TASK"):  # the task's cores: what a new run records without --threads
            torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
        errors = []

        def log(event) -> None:  # the task's events go to its log; its failures end the task
            print(event, flush=True)
            if isinstance(event, Failed):
                errors.append(event.error)

        pm = rebuild_plugin_manager(self.plugins)
        work = Work(self.runs, FeatureStore(self.store), self.stages, pm, self.threads)
        try:  # as the runs train in this process: alone, or as one stack
            InProcess().run(work, log, lambda finished: None)
        except ClipclapError as e:
            errors.append(str(e))
        if errors:
            raise RunError("; ".join(errors))
        return [str(path) for path, _ in self.runs]

    def checkpoint(self, *args, **kwargs):
        """submitit calls this before the task is requeued: the same task, to run again."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


@dataclass(frozen=True)
class Slurm:
    """The runs of a plan as the tasks of one SLURM job array (`settings`), submitit's files under
    `runs_dir`/.slurm; with `wait`, follows the tasks' states until they end. `stack`: runs that
    differ only in the seed share a task, trained as one stack."""

    settings: SlurmSettings = field(default_factory=SlurmSettings)
    runs_dir: Path = Path("runs")
    wait: bool = True
    stack: bool = True
    poll: float = 2.0

    @property
    def folder(self) -> Path:
        return self.runs_dir / ".slurm"

    def run(self, work: Work, emit: Emit, report: Report) -> Outcome:
        check_slurm(self.settings, "train")
        work.reads.forget()  # the tasks read the data they train on: none is kept here while they run
        tally = Tally(emit)
        groups = self._groups(work)
        done = [g for g in groups if all(_done(work, i) for i in g)]
        if done:
            self._reused(work, [i for g in done for i in g], tally)
        jobs = self._jobs()
        queue = queue_now()
        live = {tuple(g): jobs[key(work, g[0])] for g in groups if g not in done
                and jobs.get(key(work, g[0]), {}).get("task") in queue}
        new = [g for g in groups if g not in done and tuple(g) not in live]
        if new:
            live |= self._submit(work, new, jobs)
        if live:
            arrays = sorted({task["task"].split("_")[0] for task in live.values()}, key=int)
            tally(Launched(tuple(i for g in live for i in g), at_once=min(len(live), self.settings.array_parallelism
                                                                         or len(live)),
                           where=f"SLURM job{'s' if len(arrays) > 1 else ''} {', '.join(arrays)}"))
        if self.wait:
            self._follow(work, live, tally)
        else:
            for group, task in live.items():
                for i in group:
                    tally(Queued(i, queue.get(task["task"], "PENDING"), task["task"]))
        return _reported(tally.outcome(work), report)

    def describe(self, work: Work) -> tuple[str, int, int]:
        """For `--dry-run` (train/preview.py): where the runs would train, the tasks that would be
        submitted (runs not finished yet), and how many of them run at once. Asks SLURM nothing."""
        tasks = sum(not all(_done(work, i) for i in g) for g in self._groups(work))
        at_once = max(1, min(tasks, self.settings.array_parallelism or tasks))
        return f"a SLURM job array on {self.settings.partition or 'the default partition'}", tasks, at_once

    def _groups(self, work: Work) -> list[list[int]]:
        from clipclap_cli.plugins.registry import get_head
        from clipclap_cli.train.stacked import stack_groups

        plan = work.plan
        return (stack_groups(plan, {spec.head: get_head(spec.head, work.pm) for _, spec in plan}) if self.stack
                else [[i] for i in range(len(plan))])

    def _jobs(self) -> dict:
        path = self.folder / JOBS
        return read_json(path) if path.exists() else {}

    @staticmethod
    def _reused(work: Work, runs: list[int], tally: Tally) -> None:
        """Runs finished already: their stages and results as they are, nothing submitted."""
        tally(Launched(tuple(runs)))
        for i in runs:
            path = work.plan[i][0]
            for stage in work.stages:
                tally(Reused(i, stage, stage_result(path, stage), _version(path)))
            tally.ended(work, i, read_json(path / RESULTS) if 2 in work.stages else None)

    def _submit(self, work: Work, groups: list[list[int]], jobs: dict) -> dict:
        """Submit one array of `groups`, recorded in jobs.json; a rejected job leaves nothing."""
        from clipclap_cli.plugins.manager import portable_plugins

        plugins = portable_plugins(work.pm)
        store = work.store.location.recorded()
        tasks = [TrainTask([(work.plan[i][0].resolve(), work.plan[i][1]) for i in g], store, work.stages, plugins,
                           work.threads) for g in groups]
        submitted = submit_array(self.folder, "clipclap-train", self.settings, tasks, "train")
        live = {}
        for group, task in zip(groups, submitted, strict=True):
            live[tuple(group)] = task
            for i in group:
                jobs[key(work, i)] = task
        write_json(self.folder / JOBS, jobs)
        return live

    def _follow(self, work: Work, live: dict, tally: Tally) -> None:
        """Each task's state as events until it leaves the queue, then how its runs ended."""
        seen: dict[str, str] = {}
        epochs = {(i, stage): n for group in live for i in group for stage in work.stages
                  if (n := _lines(work, i, stage)) is not None}  # what was there before: not reported again
        while live:
            queue = queue_now()
            for group, task in list(live.items()):
                state = queue.get(task["task"])
                if state in LIVE:
                    if seen.get(task["task"]) != state:
                        seen[task["task"]] = state
                        for i in group:
                            tally(Queued(i, state, task["task"]))
                    for i in group if state == "RUNNING" else ():
                        _epochs(work, i, epochs, tally)
                    continue
                del live[group]
                for i in group:
                    _epochs(work, i, epochs, tally)
                error = task_error(task)
                for i in group:
                    if _done(work, i):
                        tally.ended(work, i, read_json(work.plan[i][0] / RESULTS) if 2 in work.stages else None)
                    else:
                        tally(Failed(i, f"{error}; SLURM task {task['task']}, log: {task['log']}; rerun the same "
                                        "command to resubmit it"))
            if live:
                time.sleep(self.poll)


def _lines(work: Work, run: int, stage: int) -> int | None:
    """How many epochs run `run` has written for `stage` (None: a stage not started; -1: finished)."""
    path = work.plan[run][0]
    if stage_result(path, stage) is not None:
        return -1
    metrics = stage_folder(path, stage) / METRICS
    return metrics.read_text().count("\n") if metrics.exists() else None


def _epochs(work: Work, run: int, reported: dict[tuple, int], emit: Emit) -> None:
    """The epochs run `run` wrote to its metrics.jsonl since the last look (`reported`: the lines
    seen of each stage, from the start of the follow; -1 when done), as the events a run trained
    here reports: its stage's start or resumption, then each epoch's record."""
    from clipclap_cli.plugins.registry import get_head

    path, spec = work.plan[run]
    for stage in work.stages:
        seen, metrics = reported.get((run, stage)), stage_folder(path, stage) / METRICS
        if seen == -1 or not metrics.exists():
            continue
        lines = metrics.read_text().splitlines()
        if seen is None or (run, stage, "started") not in reported:
            first = stage_result(path, 1) if stage == 2 else None
            free = get_head(spec.head, work.pm).training_free
            total = 1 if free else (first["best_epoch"] if first else spec.train.epochs)
            emit(Started(run, stage, seen or 0, total, 0 if free else spec.train.batches_per_epoch))
            reported[run, stage, "started"], seen = 1, seen or 0
        for line in lines[seen:]:
            emit(Epoch(run, stage, json.loads(line)))
        reported[run, stage] = -1 if stage_result(path, stage) is not None else len(lines)


def key(work: Work, run: int) -> str:
    """A run's entry in jobs.json: its folder, absolute."""
    return str(work.plan[run][0].resolve())


def _done(work: Work, run: int) -> bool:
    """Whether run `run` has every stage asked for (and its results, with stage 2)."""
    path = work.plan[run][0]
    return all(stage_result(path, s) is not None for s in work.stages) and (
        2 not in work.stages or (path / RESULTS).exists())


def _version(path: Path) -> str:
    from clipclap_cli.runs.folder import load_spec

    return load_spec(path)[1].get("clipclap_version", "?")


def _reported(outcome: Outcome, report: Report) -> Outcome:
    if outcome.finished:
        report(outcome.finished)
    return Outcome(outcome.finished, outcome.failed, outcome.runs, " on SLURM")
