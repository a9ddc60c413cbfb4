"""The one drawing of training: the scheduler's events (`train/scheduler.py`) as progress bars and
per-epoch lines on stderr, whichever launcher trains the runs (`train`, `demo`).

A run's lines carry its label: none for a run trained alone, `seed N` in a stack, `HEAD seed N`
side by side. A run alone or a stack has one bar counting the epoch's batches; runs side by side
have a bar each, counting epochs. A bar's text is about the epoch it counts (never the loss and HM
of the one before: those have their line); a training-free head, which has no batches to count,
has no bar but one line a stage that says so.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.markup import escape
from rich.progress import TextColumn

from clipclap_cli import __version__
from clipclap_cli.cli.console import err, progress, test_figures
from clipclap_cli.runs.files import RESULTS
from clipclap_cli.train.scheduler import (
    Emit,
    Epoch,
    Failed,
    Finished,
    Launched,
    Outcome,
    Plan,
    Planned,
    Queued,
    Reused,
    RunEvent,
    Shared,
    Started,
    Step,
)


class TrainingProgress:
    """Draws the events of `plan`'s runs (`stages` asked for); use as a context manager, which
    closes the bars however the training ends, and call it with each event."""

    def __init__(self, stages: tuple[int, ...]):
        self.plan: Plan = []  # the first event says (`Planned`)
        self.stages = stages
        self.bar = None
        self.labels: dict[int, str] = {}
        self.tasks: dict[int, object] = {}  # a run's bar
        self.epochs: dict[int, int] = {}  # the epochs of a run's current stage
        self.free: set[int] = set()  # the runs of a training-free head (no batches to train)
        self.open: set[int] = set()  # the runs of the bar that have not ended
        self.lines: list[str] = []  # the lines of the runs that ended, printed when the bar closes
        self.side_by_side = self.stacked = False

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        """Close the bar, then print the lines of the runs that ended under it."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        for line in self.lines:
            err.print(line)
        self.lines.clear()

    def __call__(self, event: RunEvent) -> None:
        getattr(self, f"_{type(event).__name__.lower()}")(event)

    def _prefix(self, run: int) -> str:
        return f"{self.labels[run]}: " if self.labels[run] else ""

    def _planned(self, e: Planned) -> None:
        self.plan = e.plan

    def _shared(self, e: Shared) -> None:
        err.print(f"rank {e.rank} of {e.world}: {len(e.runs)} of {len(self.plan)} runs")

    def _launched(self, e: Launched) -> None:
        self._close()
        self.stacked, self.side_by_side, self.open = e.stacked, e.at_once > 1 or bool(e.where), set(e.runs)
        specs = {i: self.plan[i][1] for i in e.runs}
        self.bar = progress(TextColumn("{task.fields[info]}"))
        self.bar.start()
        if self.side_by_side:
            err.print(f"training {len(e.runs)} run{'s' * (len(e.runs) > 1)}, {e.at_once} at a time in {e.where}")
            for i, spec in specs.items():
                self.labels[i] = f"{spec.head} seed {spec.train.seed}"
                self.tasks[i] = self.bar.add_task(self.labels[i], total=None, info="waiting")
            return
        spec = specs[e.runs[0]]
        # shown once its stage starts: a training-free head's stays hidden (nothing to count)
        task = self.bar.add_task("", total=spec.train.batches_per_epoch, info="", visible=False)
        if e.stacked:
            seeds = ", ".join(str(s.train.seed) for s in specs.values())
            err.print(f"[bold]{spec.head}[/bold] on {spec.dataset}: {len(e.runs)} runs (seeds {seeds}) "
                      "trained as one stack")
        for i, s in specs.items():
            self.labels[i] = f"seed {s.train.seed}" if e.stacked else ""
            self.tasks[i] = task

    def _header(self, run: int) -> None:
        """The line that starts a run's output: what it trains and where."""
        path, spec = self.plan[run]
        if self.labels[run]:
            err.print(f"[bold]{escape(self.labels[run])}[/bold] -> {path}")
        else:
            err.print(f"[bold]{spec.head}[/bold] on {spec.dataset} (seed {spec.train.seed}) -> {path}")

    def _started(self, e: Started) -> None:
        if e.stage == self.stages[0]:
            self._header(e.run)
        self.epochs[e.run] = e.epochs
        if e.batches == 0:
            self.free.add(e.run)
        if e.epochs_done:
            err.print(f"{self._prefix(e.run)}stage {e.stage}: resuming at epoch {e.epochs_done + 1}/{e.epochs}")
        task = self.tasks[e.run]
        if self.side_by_side:
            info = f"stage {e.stage}" + (": nothing to train" if e.run in self.free else "")
            self.bar.update(task, total=e.epochs, completed=e.epochs_done, info=info)
        elif e.run not in self.free:
            self.bar.reset(task, description=self._epoch_text(e.run, e.stage, e.epochs_done + 1), info="",
                           visible=True, **({} if e.batches is None else {"total": e.batches}))

    def _epoch_text(self, run: int, stage: int, epoch: int) -> str:
        """A bar's text: a stack's runs may train different epochs in stage 2, so it has no total."""
        return f"stage {stage} epoch {epoch}" + ("" if self.stacked else f"/{self.epochs[run]}")

    def _step(self, e: Step) -> None:
        self.bar.update(self.tasks[e.run], completed=e.batches)

    def _epoch(self, e: Epoch) -> None:
        r, task = e.record, self.tasks[e.run]
        hm = f"val HM {100 * r['val']['hm']:.2f}"
        if e.run in self.free:  # its one epoch is a validation pass
            self.bar.console.print(f"{self._prefix(e.run)}stage {e.stage}: nothing to train (training-free head), {hm}")
            if self.side_by_side:
                self.bar.update(task, completed=r["epoch"], info=f"stage {e.stage}  {hm}")
            return
        info = f"{hm}  best epoch {r['best_epoch']}"
        loss = f"loss {r['losses']['total']:.4f}  " if "total" in r["losses"] else ""
        self.bar.console.print(f"{self._prefix(e.run)}stage {e.stage} epoch {r['epoch']}/{self.epochs[e.run]}: "
                               f"{loss}{info}")
        if self.side_by_side:  # the bar counts epochs: its text is about the epochs done
            self.bar.update(task, completed=r["epoch"], info=f"stage {e.stage}  {info}")
        elif r["epoch"] < self.epochs[e.run]:  # the next epoch's batches, its text its own
            self.bar.reset(task, description=self._epoch_text(e.run, e.stage, r["epoch"] + 1), info="")
        # else the stage's last epoch: its bar stays as it ended, until the next stage (or the end)

    def _queued(self, e: Queued) -> None:
        """A cluster task's state (train/slurm.py): a line when it changes, and in the run's bar."""
        state = e.state.lower()
        self.bar.console.print(f"{escape(self._prefix(e.run))}SLURM task {e.task}: {state}")
        self.bar.update(self.tasks[e.run], info=f"{state} (SLURM task {e.task})")

    def _reused(self, e: Reused) -> None:
        path, prefix = self.plan[e.run][0], self._prefix(e.run)
        if e.stage == self.stages[0]:
            self._header(e.run)
            if e.made_by != __version__:
                err.print(f"[yellow]{escape(prefix)}this run was trained by clipclap {e.made_by} "
                          f"(this is {__version__})[/yellow]")
            err.print(f"{prefix}finished stages are reused as they are; remove {path} to train them again")
        best = f", best epoch {e.result['best_epoch']}" if e.stage == 1 else ""
        epochs = e.result["epochs"]
        err.print(f"{prefix}stage {e.stage}: already trained ({epochs} epoch{'s' * (epochs != 1)}{best})")
        if self.side_by_side:
            self.bar.update(self.tasks[e.run], info=f"stage {e.stage} already trained")

    def _ended(self, run: int, line: str | None) -> None:
        """Run `run` ended with `line`: the lines of a bar's runs come once the last of them ended
        and the bar closed (in the order they ended)."""
        self.open.discard(run)
        if line is not None:
            self.lines.append(line)
        if not self.open:
            self._close()

    def _finished(self, e: Finished) -> None:
        path = self.plan[e.run][0] / RESULTS
        self._ended(e.run, None if e.results is None else
                    f"{self._prefix(e.run)}test: {test_figures(e.results)} -> {path}")

    def _failed(self, e: Failed) -> None:
        label = self.labels.get(e.run)
        self._ended(e.run, f"[red]Error:[/red] {escape(label) + ': ' if label else ''}{escape(e.error)}")

def train_drawn(stages: tuple[int, ...], train: Callable[[Emit], Outcome]) -> Outcome:
    """`train(emit)` (`schedule` or `train_request` of train/scheduler.py, training `stages`) with
    its events drawn; `Outcome.check()` raises what failed."""
    with TrainingProgress(stages) as show:
        return train(show)
