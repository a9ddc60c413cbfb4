"""A whole `clipclap report`, from run folders to its text: the runs found and loaded (the
damaged left out), their seeds grouped, each row compared with the reference row, the paper's
rows added, and the table rendered in one format, with the figures drawn where asked (and
embedded in the HTML page).

What the person at the terminal should be told (a run left out, columns of different data, how
many figures were written) goes through `say(text, label)`: the command prints it; this layer
prints nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clipclap_cli.errors import RunError
from clipclap_cli.metric_table import METRICS, SHORT_METRICS
from clipclap_cli.report.grouping import Cell, aggregate, with_published
from clipclap_cli.report.loading import RunResult, load_runs
from clipclap_cli.report.seed_statistics import compare
from clipclap_cli.report.tables import check_layout, render
from clipclap_cli.runs.finding import find_runs

Say = Callable[..., None]
"`say(text, label=None)`: one line for stderr; `label` ('left out') is a warning's prefix"


def make_report(paths: list[Path], say: Say, fmt: str = "markdown", su: bool = True, plots: Path | None = None,
                published: dict[str, dict] | None = None, against: str | None = None, layout_name: str = "default",
                caption: str | None = None, label: str | None = None) -> str:
    """The report of the runs at `paths` in format `fmt` (checked by the caller), the S and U
    columns with `su`; figures into `plots`; with `published` ({dataset: {head: {metric:
    percent}}}) the paper's rows join the table; each row is compared with the one `against`
    names (`seed_statistics.reference_rows`; None: clipclap's, if the table has one);
    `layout_name`, `caption` and `label` as `tables.render` takes them (checked before any run
    is read). A damaged run is left out of the table and the figures alike, in one line naming
    it; a RunError where no run is left."""
    check_layout(fmt, layout_name, caption, label)
    found, pending = find_runs(paths)
    runs, skipped = load_runs(found)
    for line in skipped:
        say(line, "left out")
    if not runs:
        raise RunError(f"no run under {', '.join(map(str, paths))} has results that can be reported "
                       f"({len(skipped)} left out, see above)")
    if pending:
        listed = ", ".join(map(str, pending[:3])) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
        say(f"not in the table: {len(pending)} run(s) without results yet ({listed})")
    cells = compare(aggregate(runs), against, say)
    for cell in cells:
        for path in cell.replaced:
            say(f"left out: {path} (its seed of {cell.method} on {cell.dataset} has a newer run: a repeat counts once)")
    for line in data_lines(cells):
        say(line)
    kept = {path for cell in cells for path in cell.runs}
    runs = [r for r in runs if str(r.path) in kept]  # the figures and the page show the table's runs only
    if published is not None:
        shown = list(dict.fromkeys(c.dataset for c in cells))
        if not any(published.get(d) for d in shown):
            say(f"no published results for {', '.join(shown)} (datasets.toml: [datasets.NAME.published])")
        cells = with_published(cells, published)
    metrics = METRICS if su else SHORT_METRICS
    if fmt == "html":
        return html_report(cells, metrics, runs, plots, say, layout_name == "paper")
    text = render(cells, fmt, metrics, layout_name, caption, label)
    if plots is not None:
        write_figures(cells, runs, plots, say)
    return text


def write_figures(cells: list[Cell], runs: list[RunResult], folder: Path, say: Say | None = None) -> list[Path]:
    """Every figure of `runs` and the comparisons into `folder`; one line (`say`) tells how many,
    and how many of them replaced a figure of the same name."""
    from clipclap_cli.report import plots

    before = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    written = plots.write_run_figures(runs, folder)  # one set for the seeds of a training-free head
    comparison = plots.write_comparison(cells, folder)
    written = [comparison, *written] if comparison is not None else written
    if say is not None:
        replaced = sum(p.name in before for p in written)
        say(f"{len(written)} plots written to {folder}"
            + (f" ({replaced} replaced figures of the same name there)" if replaced else ""))
    return written


def html_report(cells: list[Cell], metrics: tuple[str, ...], runs: list[RunResult], folder: Path | None,
                say: Say, paper: bool = False) -> str:
    """The standalone page: the comparison and, per row, the figures of its first seed, embedded
    (every run's figures go to `folder` with --plots; without it they are drawn in a temporary
    folder); without matplotlib the page says how to get them. `paper`: the results table in
    the paper's layout (`grouping.layout`)."""
    import importlib.util
    import tempfile

    from clipclap_cli.report.html_page import page
    from clipclap_cli.report.plots import plot_stems

    if folder is None and importlib.util.find_spec("matplotlib") is None:
        return page(cells, metrics, runs, figures_note="No figures: pip install 'clipclap[plots]' for them.",
                    paper=paper)
    firsts = {c.runs[0] for c in cells if c.runs}
    shown = [r for r in runs if str(r.path) in firsts]
    note = "The figures of each row's first seed" + ("" if len(shown) == len(runs) else
                                                      f" ({len(shown)} of {len(runs)} runs)")
    if folder is not None:
        written = write_figures(cells, runs, folder, say)
        stems = plot_stems(runs)
        picked = [p for p in written if p.name.startswith("comparison")
                  or any(p.name.startswith(stems[str(r.path)]) for r in shown)]
        return page(cells, metrics, runs, picked, note + f"; every run's are in {folder}.", paper=paper)
    with tempfile.TemporaryDirectory(prefix="clipclap-report-") as tmp:
        return page(cells, metrics, runs, write_figures(cells, shown, Path(tmp)), note + ".", paper=paper)


def data_lines(cells: list[Cell]) -> list[str]:
    """One line per dataset whose runs were trained on different data: the columns it became."""
    columns: dict[str, dict] = {}
    for c in cells:
        if c.data_tag:
            columns.setdefault(c.dataset.removesuffix(f" [{c.data_tag}]"), {}).setdefault(c.dataset, c)
    return [f"{base}: runs trained on {len(by)} different data (features, label embeddings or split) are "
            "separate columns, never seeds of one row: "
            + "; ".join(f"{label} ({', '.join(c.stores) or 'store not recorded'})" for label, c in by.items())
            for base, by in columns.items()]
