"""The only place rich is configured: stderr console, progress bars, tables."""

from __future__ import annotations

import json
import sys
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


def progress(*extra_columns) -> Progress:
    """A progress bar on stderr with the standard columns (spinner, bar, M/N, elapsed, ETA)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def figures_line(percent: dict[str, float]) -> str:
    """S, U, HM and ZSL (those given, in percent) on one line: 'S 76.49  U 66.48  HM ...'."""
    from clipclap_cli.protocol import LABELS, METRICS

    return "  ".join(f"{LABELS[m]} {percent[m]:.2f}" for m in METRICS if m in percent)


def test_figures(results: dict) -> str:
    """A run's test figures on one line, in percent: S, U, HM, ZSL and the bias used."""
    t = results["test"]
    over = results.get("classes")
    classes = f"; S over {over['seen']} seen classes, U and ZSL over {over['unseen']} unseen" if over else ""
    return figures_line({m: 100 * v for m, v in t.items() if m != "beta"}) + f"  (beta* {t['beta']:.4f}{classes})"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c)
    from rich.markup import escape

    for r in rows:
        t.add_row(*["" if v is None else escape(str(v)) for v in r])
    return t
