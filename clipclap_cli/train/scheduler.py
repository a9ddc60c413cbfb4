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

from clipclap_cli.data.protocol_data import DatasetReads, Expected, ProtocolData
from clipclap_cli.errors import ClipclapError
from clipclap_cli.runs.plan import RunRequest, check_request, plan_runs
from clipclap_cli.runs.spec import RunSpec
from clipclap_cli.store.feature_store import FeatureStore

Plan = list[tuple[Path, RunSpec]]


@dataclass(frozen=True)
class Planned:
    """The runs the command trains, in order (their indices are the other events' `run`); the
    first event of every schedule."""

    plan: Plan


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
    """A stage of run `run` starts, or resumes after `epochs_done` of its `epochs`, each of
    `batches` batches (0: a training-free head, nothing to train; None: not known)."""

    run: int
    stage: int
    epochs_done: int
    epochs: int
    batches: int | None = None


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


@dataclass(frozen=True)
class Queued:
    """Run `run`'s task `task` on a cluster's scheduler is in `state` (SLURM's: PENDING, RUNNING, ...)."""

    run: int
    state: str
    task: str


RunEvent = Planned | Launched | Shared | Started | Step | Epoch | Reused | Finished | Failed | Queued
Emit = Callable[[RunEvent], None]
Report = Callable[[tuple[Path, ...]], None]


@dataclass(frozen=True)
class Work:
    """What a launcher trains: the plan, the store, the stages asked for, the plugins, the CPU
    threads of a new run (None: torch's, or what the run recorded), and the command's reads of
    the store (`DatasetReads`: runs trained in this process take the plan's read of their data)."""

    plan: Plan
    store: FeatureStore
    stages: tuple[int, ...]
    pm: object = None
    threads: int | None = None
    reads: DatasetReads | None = None

    def __post_init__(self) -> None:
        if self.reads is None:
            object.__setattr__(self, "reads", DatasetReads(self.store))

    def data(self, spec: RunSpec) -> ProtocolData:
        """The data run `spec` trains on, read once for the command and checked to train on."""
        return self.reads.read(**spec.data_request(), expected=Expected(trainable=True))

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

    return Callbacks(stage_start=lambda stage, done, epochs, batches: emit(Started(run, stage, done, epochs, batches)),
                     step=(lambda n: emit(Step(run, n))) if steps else (lambda n: None),
                     epoch_end=lambda stage, record: emit(Epoch(run, stage, record.as_dict())),
                     stage_reused=reused)


def schedule(plan: Plan, store: FeatureStore, stages: tuple[int, ...], launcher: Launcher, pm=None,
             threads: int | None = None, emit: Emit = lambda event: None, report: Report | None = None) -> Outcome:
    """Train the requested `stages` of every run of `plan` with `launcher`, each event to `emit`;
    `report(finished)` is called once where the results are reported (rank 0 of several).
    `Outcome.check()` raises what failed."""
    return _launch(Work(plan, store, stages, pm, threads), launcher, emit, report)


def planned(store: FeatureStore, entry, request: RunRequest, runs_dir: Path, run_dir: Path | None = None,
            stages: tuple[int, ...] = (1, 2), pm=None, threads: int | None = None) -> Work:
    """The work of what `clipclap train` asks for (`request`, on `entry`'s dataset): the request
    checked, the dataset read once and checked to train on, the runs planned on that read (which
    the runs trained in this process then take), all before any folder is written."""
    check_request(entry, request, pm)
    reads = DatasetReads(store)
    data = reads.read(entry.name, request.split or entry.split, request.device, request.legacy_label_order,
                      None, Expected(trainable=True))
    plan = plan_runs(entry, request, data.dims, store.location, runs_dir, run_dir, pm)
    return Work(plan, store, stages, pm, threads, reads)


def train_request(store: FeatureStore, entry, request: RunRequest, runs_dir: Path, run_dir: Path | None,
                  stages: tuple[int, ...], launcher: Callable[[int], Launcher], pm=None, threads: int | None = None,
                  emit: Emit = lambda event: None, report: Report | None = None) -> Outcome:
    """What `clipclap train` asks for, trained: the work `planned`, then launched with
    `launcher(number of runs)`, each event to `emit` (see `schedule`)."""
    work = planned(store, entry, request, runs_dir, run_dir, stages, pm, threads)
    return _launch(work, launcher(len(work.plan)), emit, report)


def _launch(work: Work, launcher: Launcher, emit: Emit, report: Report | None) -> Outcome:
    emit(Planned(work.plan))
    return launcher.run(work, emit, report or (lambda finished: None))
