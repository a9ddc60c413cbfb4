"""The only place rich is configured: stderr console, progress bars, tables."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

err = Console(stderr=True, highlight=False, soft_wrap=True)
# Wide when piped, so tables are not truncated to 80 columns in logs and tests.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


class LoggedProgress(Progress):
    """Progress without a terminal (a log file, a batch job): no bar, but one line per task on
    stderr every CLIPCLAP_PROGRESS_SECONDS (default 30) and when the work ends: done / total,
    the rate and the time left, and the task's text fields. A hidden task (`visible=False`),
    which a terminal does not show, has no lines either."""

    def __init__(self, *columns, **options):
        super().__init__(*columns, **options | {"disable": True})
        self._every = float(os.environ.get("CLIPCLAP_PROGRESS_SECONDS", "30"))
        self._last: dict = {}

    def update(self, task_id, **changes) -> None:
        super().update(task_id, **changes)
        self._log(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def stop(self) -> None:
        for task in self.tasks:
            if task.completed:
                self._log(task.id, force=True)
        super().stop()

    def _log(self, task_id, force: bool = False) -> None:
        now, task = time.monotonic(), self._tasks[task_id]
        if not task.visible:
            return
        last_time, last_done = self._last.get(task_id, (now - self._every - 1, None))
        if (not force and now - last_time < self._every) or (force and last_done == task.completed):
            return
        self._last[task_id] = (now, task.completed)
        done = f"{task.completed:.0f}" + (f"/{task.total:.0f}" if task.total else "")
        rate = task.finished_speed or task.speed
        left = task.time_remaining
        parts = [f"{task.description}: {done}", f"{rate:.1f}/s" if rate else "",
                 f"about {_duration(left)} left" if left and not task.finished else "",
                 f"elapsed {_duration(task.elapsed or 0)}",
                 *(str(v) for v in task.fields.values() if str(v))]
        err.print(", ".join(p for p in parts if p), markup=False, highlight=False)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress(*extra_columns) -> Progress:
    """A progress bar on stderr with the standard columns (spinner, bar, M/N, elapsed, ETA);
    without a terminal, log lines instead (`LoggedProgress`)."""
    return (Progress if err.is_terminal else LoggedProgress)(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=err,
        transient=False,
    )


def figures_line(percent: dict[str, float]) -> str:
    """S, U, HM and ZSL (those given, in percent) on one line: 'S 76.49  U 66.48  HM ...'."""
    from clipclap_cli.metric_table import LABELS, METRICS

    return "  ".join(f"{LABELS[m]} {percent[m]:.2f}" for m in METRICS if m in percent)


def test_figures(results: dict) -> str:
    """A run's test figures on one line, in percent: S, U, HM, ZSL and the bias used."""
    t = results["test"]
    over = results.get("classes")
    classes = f"; S over {over['seen']} seen classes, U and ZSL over {over['unseen']} unseen" if over else ""
    return figures_line({m: 100 * v for m, v in t.items() if m != "beta"}) + f"  (beta* {t['beta']:.4f}{classes})"


def print_json(data: Any) -> None:
    """`--json` output: JSON a strict reader parses (a NaN or infinity is refused, naming where
    it is, as in every JSON file clipclap writes); other objects (paths) as their text."""
    from clipclap_cli.errors import WriteError
    from clipclap_cli.files import non_finite_path

    culprit = non_finite_path(data)
    if culprit is not None:
        raise WriteError(f"refusing to print JSON: {culprit} is not a finite number")
    sys.stdout.write(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")  # long values (video ids, paths) wrap whole, never cut to "…"
    from rich.markup import escape

    for r in rows:
        t.add_row(*["" if v is None else escape(str(v)) for v in r])
    return t
