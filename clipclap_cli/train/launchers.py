"""Where the runs of a plan train: the launchers of `train/scheduler.py`, one small class each.

- `InProcess`: here, one after the other; runs that differ only in the seed as one stack
  (`train/stacked.py`) unless `stack` is off. A run trained alone raises its failure.
- `Workers`: `jobs` at a time in worker processes (`train/jobs.py`).
- `OnRanks`: torchrun's ranks (`train/distributed.py`), each training its share here or in workers.
A launcher for a cluster's jobs (issue 41) is one more class with the same `run`: it trains the
runs somewhere and turns what they report into the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipclap_cli.errors import ClipclapError
from clipclap_cli.train.distributed import Ranks
from clipclap_cli.train.scheduler import (
    Emit,
    Failed,
    Launched,
    Launcher,
    Outcome,
    Report,
    Shared,
    Step,
    Tally,
    Work,
    callbacks,
    renumber,
)


def _reported(outcome: Outcome, report: Report) -> Outcome:
    """`outcome`, once its finished runs are reported (when there are some)."""
    if outcome.finished:
        report(outcome.finished)
    return outcome


@dataclass(frozen=True)
class InProcess:
    """The runs one after the other in this process; with `stack`, runs that differ only in the
    seed train as one stacked model (heads that support it)."""

    stack: bool = True

    def run(self, work: Work, emit: Emit, report: Report) -> Outcome:
        from clipclap_cli.plugins.registry import get_head
        from clipclap_cli.train.stacked import stack_groups

        tally = Tally(emit)
        plan = work.plan
        groups = (stack_groups(plan, {spec.head: get_head(spec.head, work.pm) for _, spec in plan}) if self.stack
                  else [[i] for i in range(len(plan))])
        for group in groups:
            tally(Launched(tuple(group), stacked=len(group) > 1))
            if len(group) == 1:
                self._alone(work, group[0], tally)
            else:
                self._stacked(work, group, tally)
        return _reported(tally.outcome(work), report)

    @staticmethod
    def _alone(work: Work, run: int, tally: Tally) -> None:
        from clipclap_cli.train.stages import train_run

        path, spec = work.plan[run]
        results = train_run(path, spec, work.store.location, work.data(spec), work.stages, callbacks(run, path, tally),
                            work.pm, work.threads)
        tally.ended(work, run, results)

    @staticmethod
    def _stacked(work: Work, group: list[int], tally: Tally) -> None:
        from clipclap_cli.train.stacked import train_stack

        runs = [work.plan[i] for i in group]  # the stack's steps come once, as its first run's
        outcomes = train_stack(runs, work.store.location, work.data(runs[0][1]), work.stages,
                               [callbacks(i, path, tally, steps=False)
                                                               for i, (path, _) in zip(group, runs, strict=True)],
                               lambda n: tally(Step(group[0], n)), work.pm, work.threads)
        for run, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):
                tally(Failed(run, str(outcome)))
            else:
                tally.ended(work, run, outcome)


@dataclass(frozen=True)
class Workers:
    """The runs `jobs` at a time in worker processes, each with a share of the CPU cores; the
    plugins that cannot be sent there are refused before any output."""

    jobs: int

    def run(self, work: Work, emit: Emit, report: Report) -> Outcome:
        from clipclap_cli.plugins.manager import portable_plugins
        from clipclap_cli.train.jobs import train_in_workers

        plugins = portable_plugins(work.pm)  # a plugin the workers cannot get fails here, before any output
        work.reads.forget()  # each worker reads the data it trains on: none is kept here meanwhile
        jobs = min(self.jobs, len(work.plan))
        tally = Tally(emit)
        tally(Launched(tuple(range(len(work.plan))), at_once=jobs, where="worker processes"))
        ends = train_in_workers(work.plan, work.store.location.recorded(), work.stages, jobs, work.threads, tally,
                                plugins)
        for end in ends:
            if isinstance(end, Failed):
                tally(end)
            else:
                tally.ended(work, end.run, end.results)
        return _reported(tally.outcome(work), report)


def here(runs: int, jobs: int = 1, stack: bool = True) -> Launcher:
    """The launcher for `runs` runs on this machine: worker processes with `jobs` > 1 and
    several runs, else this process."""
    return Workers(jobs) if jobs > 1 and runs > 1 else InProcess(stack)


@dataclass(frozen=True)
class OnRanks:
    """torchrun's rank `ranks.rank` trains its share of the plan (`here`, with `jobs` and
    `stack`); the ranks then gather what finished and what failed, rank 0 reports every rank's
    runs, and a failure on any rank fails the command on every rank (torchrun reports it)."""

    ranks: Ranks
    jobs: int = 1
    stack: bool = True

    def run(self, work: Work, emit: Emit, report: Report) -> Outcome:
        from clipclap_cli.train.distributed import barrier, gather, process_group

        mine = tuple(self.ranks.share(list(range(len(work.plan)))))
        emit(Shared(self.ranks.rank, self.ranks.world, mine))
        with process_group():
            error = None
            try:  # this rank's runs, numbered as in the whole plan
                local = here(len(mine), self.jobs, self.stack).run(work.part(mine), lambda e: emit(renumber(e, mine)),
                                                                   lambda finished: None)
                finished, failed = local.finished, local.failed
            except ClipclapError as e:  # still gathered with the others, so that no rank waits forever
                finished, failed, error = (), len(mine), str(e)
            outcomes = gather(([str(p) for p in finished], failed))
            done = tuple(Path(p) for paths, _ in outcomes for p in paths)
            if self.ranks.rank == 0 and done:
                report(done)
            barrier()  # no rank exits before rank 0 has reported: torchrun stops every rank when one fails
        return Outcome(done, sum(n for _, n in outcomes), len(work.plan), " on the ranks", error)


def launcher_for(jobs: int = 1, stack: bool = True, ranks: Ranks | None = None, runs: int = 1,
                 cluster: Launcher | None = None) -> Launcher:
    """The launcher of a `train` command: over torchrun's `ranks` when it started the command,
    else `here` for `runs` runs; a `cluster`'s (train/slurm.py) when the command asks for one."""
    if cluster is not None:
        return cluster
    return OnRanks(ranks, jobs, stack) if ranks is not None else here(runs, jobs, stack)
