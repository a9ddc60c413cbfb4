"""One way to train the runs of a plan: a launcher trains them somewhere and reports typed events.

`schedule` hands a plan (its (folder, RunSpec) pairs) to a launcher (`train/launchers.py`: in
this process, in worker processes, over torchrun's ranks; a cluster's jobs can be one more) and
every launcher reports what happens through the same events, so one renderer draws any of them.
A launcher reports through `emit` as the runs train, not through an iterator: a run trained in
this process must train in its main thread (torch's CPU threads are set per OS thread, and
Ctrl-C arrives there), and its progress comes from callbacks inside the trainer's epoch.
No rich here: the command line draws the events (`cli/progress.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from clipclap_cli.errors import ClipclapError
from clipclap_cli.runs.spec import RunSpec

Plan = list[tuple[Path, RunSpec]]


@dataclass(frozen=True)
class Launched:
    """`runs` (indices into the plan) start: `stacked` as one stacked model, or `at_once` side by
    side in `where` (worker processes, say); one run alone has neither."""

    runs: tuple[int, ...]
    stacked: bool = False
    at_once: int = 1
    where: str = ""


@dataclass(frozen=True)
class Shared:
    """This process trains `runs` of the plan, as rank `rank` of `world` (torchrun)."""

    rank: int
    world: int
    runs: tuple[int, ...]


@dataclass(frozen=True)
class Started:
    """A stage of run `run` starts, or resumes after `epochs_done` of its `epochs`."""

    run: int
    stage: int
    epochs_done: int
    epochs: int


@dataclass(frozen=True)
class Step:
    """`batches` batches of the current epoch of run `run` (or of its stack) are done."""

    run: int
    batches: int


@dataclass(frozen=True)
class Epoch:
    """An epoch of run `run` ended: `record` is its metrics.jsonl line (`EpochRecord.as_dict`)."""

    run: int
    stage: int
    record: dict


@dataclass(frozen=True)
class Reused:
    """A stage run `run` had finished already (its `result`), reused as it is; `made_by`: the
    clipclap version that trained the run."""

    run: int
    stage: int
    result: dict
    made_by: str = "?"


@dataclass(frozen=True)
class Finished:
    """Run `run` ended: its test results, or None when stage 2 was not asked for."""

    run: int
    results: dict | None


@dataclass(frozen=True)
class Failed:
    """Run `run` failed (the others go on): the error's line."""

    run: int
    error: str


RunEvent = Launched | Shared | Started | Step | Epoch | Reused | Finished | Failed
Emit = Callable[[RunEvent], None]
Report = Callable[[tuple[Path, ...]], None]


@dataclass(frozen=True)
class Work:
    """What a launcher trains: the plan, the store, the stages asked for, the plugins, and the
    CPU threads of a new run (None: torch's, or what the run recorded)."""

    plan: Plan
    store: object
    stages: tuple[int, ...]
    pm: object = None
    threads: int | None = None

    def part(self, runs: tuple[int, ...]) -> Work:
        """The same work for some of the plan's runs."""
        return replace(self, plan=[self.plan[i] for i in runs])


@dataclass(frozen=True)
class Outcome:
    """How a plan ended: the folders of the runs with results, how many runs failed, of how many,
    `where` they ran (for the message) and an error that stopped this process's share."""

    finished: tuple[Path, ...]
    failed: int
    runs: int
    where: str = ""
    error: str | None = None

    def check(self) -> None:
        """Raise the failure, if any: this process's own error as it is, else the count."""
        if self.error is not None:
            raise ClipclapError(self.error)
        if self.failed:
            raise ClipclapError(f"{self.failed} of {self.runs} runs failed{self.where} (above); rerun the same "
                                "command to retry them")


class Launcher(Protocol):
    """Trains the runs of `work` somewhere, reports each event through `emit`, calls `report`
    once with the finished folders where results are reported (one process of several), and
    returns the outcome. A run that fails is a `Failed` event and the others go on; an error
    that stops the work (a run trained alone in this process) is raised."""

    def run(self, work: Work, emit: Emit, report: Report) -> Outcome: ...


@dataclass
class Tally:
    """Counts the ends among the events passing to `emit`: what a launcher's outcome says."""

    emit: Emit
    finished: list[Path] = field(default_factory=list)
    failed: int = 0

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, Failed):
            self.failed += 1
        self.emit(event)

    def outcome(self, work: Work) -> Outcome:
        return Outcome(tuple(self.finished), self.failed, len(work.plan))

    def ended(self, work: Work, run: int, results: dict | None) -> None:
        """Run `run` ended with `results`: its Finished event, and its folder if it has results."""
        if results is not None:
            self.finished.append(work.plan[run][0])
        self(Finished(run, results))


def renumber(event: RunEvent, runs: tuple[int, ...]) -> RunEvent:
    """`event` of a part of a plan (`runs`: the plan's indices of the part's runs) for the plan."""
    if isinstance(event, Launched | Shared):
        return replace(event, runs=tuple(runs[i] for i in event.runs))
    return replace(event, run=runs[event.run])


def callbacks(run: int, path: Path, emit: Emit, steps: bool = True):
    """`train_run`'s callbacks for run `run` (folder `path`) as events; `steps`: also a Step per batch."""
    from clipclap_cli.runs.folder import load_spec
    from clipclap_cli.train.stages import Callbacks

    def reused(stage: int, result: dict) -> None:
        emit(Reused(run, stage, result, load_spec(path)[1].get("clipclap_version", "?")))

    return Callbacks(stage_start=lambda stage, done, epochs: emit(Started(run, stage, done, epochs)),
                     step=(lambda n: emit(Step(run, n))) if steps else (lambda n: None),
                     epoch_end=lambda stage, record: emit(Epoch(run, stage, record.as_dict())),
                     stage_reused=reused)


def schedule(plan: Plan, store, stages: tuple[int, ...], launcher: Launcher, pm=None, threads: int | None = None,
             emit: Emit = lambda event: None, report: Report | None = None) -> Outcome:
    """Train the requested `stages` of every run of `plan` with `launcher`, each event to `emit`;
    `report(finished)` is called once where the results are reported (rank 0 of several).
    `Outcome.check()` raises what failed."""
    return launcher.run(Work(plan, store, stages, pm, threads), emit, report or (lambda finished: None))
