"""`clipclap report`: the paper-style results table over runs, and calibration plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import catalog, datasets_option
from clipclap_cli.cli.console import err, out


def install(app, pm) -> None:
    @app.command("report")
    def report(
        runs: Annotated[list[Path] | None, typer.Argument(metavar="RUN", help="Run folders, or folders to search (default: --runs-dir)")] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="markdown, latex, html, csv or json")] = "markdown",
        su: Annotated[bool, typer.Option("--su/--no-su", help="S and U columns before HM and ZSL (--no-su: HM and ZSL only)")] = True,
        plots: Annotated[Path | None, typer.Option("--plots", metavar="DIR", help="Write the figures here as PNG (bias curves, per-class accuracy, training curves, a comparison); --format html embeds them")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the table to this file (whole or not at all; a file there is replaced, and the command says so)")] = None,
        runs_dir: Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="Searched when no RUN is given")] = Path("runs"),
        published: Annotated[bool, typer.Option("--published", help="Add the paper's results of the same datasets, as rows 'HEAD (paper)'")] = False,
        against: Annotated[str, typer.Option("--against", metavar="METHOD", help="The row every other is compared with, by a paired t-test over the seeds both have")] = "clipclap",
        datasets_file: datasets_option("With --published: a datasets.toml whose published results add to or "
                                       "override the project's") = None,
    ):
        """Table of S/U/HM/ZSL per method and dataset. Seeds grouped as mean ± std (n).

        Each row is compared with the --against row of its dataset (clipclap by default) by a
        paired t-test over the seeds both have; values that do not differ at p < 0.05 are
        marked † and the p-values follow the table. --format csv and json add the 95 %
        confidence intervals; --format html is a standalone page with the figures embedded."""
        from clipclap_cli.errors import RunError

        if not runs and not runs_dir.exists():  # the default, searched: say so rather than "no such run"
            raise RunError(f"no runs folder {runs_dir} (searched when no RUN is given; `clipclap train` writes "
                           "runs there, --runs-dir names another)")
        paper = {e.name: e.published for e in catalog(pm, datasets_file)} if published else None
        print_report(runs or [runs_dir], fmt, su, plots, output, paper, against)


def print_report(paths: list[Path], fmt: str = "markdown", su: bool = True, plots: Path | None = None,
                 output: Path | None = None, published: dict[str, dict] | None = None,
                 against: str = "clipclap") -> str:
    """Render the table for `paths` to stdout (or `output`); optionally write plots. With
    `published` ({dataset: {head: {metric: percent}}}), the paper's rows join the table.
    A damaged run is left out of the table and the figures alike, in one line naming it."""
    from rich.markup import escape

    from clipclap_cli.errors import RunError
    from clipclap_cli.report import tables as reporting

    reporting.check_format(fmt)  # before anything is read
    for place in (output, plots):
        if place is not None:
            check_output_place(place)
    found, pending = reporting.find_runs(paths)
    runs, skipped = reporting.load_runs(found)
    for line in skipped:
        err.print(f"[yellow]left out:[/yellow] {escape(line)}")
    if not runs:
        raise RunError(f"no run under {', '.join(map(str, paths))} has results that can be reported "
                       f"({len(skipped)} left out, see above)")
    if pending:
        listed = ", ".join(map(str, pending[:3])) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
        err.print(escape(f"not in the table: {len(pending)} run(s) without results yet ({listed})"))
    cells = reporting.compare(reporting.aggregate(runs), against)
    for cell in cells:
        for path in cell.replaced:
            err.print(escape(f"left out: {path} (its seed of {cell.method} on {cell.dataset} has a newer run: "
                             "a repeat counts once)"))
    for line in data_lines(cells):
        err.print(escape(line))
    kept = {path for cell in cells for path in cell.runs}
    runs = [r for r in runs if str(r.path) in kept]  # the figures and the page show the table's runs only
    if published is not None:
        shown = list(dict.fromkeys(c.dataset for c in cells))
        if not any(published.get(d) for d in shown):
            err.print(escape(f"no published results for {', '.join(shown)} (datasets.toml: [datasets.NAME.published])"))
        cells = reporting.with_published(cells, published)
    metrics = ("seen", "unseen", "hm", "zsl") if su else ("hm", "zsl")
    if fmt == "html":
        text = _html_page(cells, metrics, runs, plots)
    else:
        text = reporting.render(cells, fmt, metrics)
        if plots is not None:
            _write_plots(cells, runs, plots)
    if output is not None:
        from clipclap_cli.files import write_text_atomic

        output.parent.mkdir(parents=True, exist_ok=True)  # a folder refused here is the system's one line
        replaced = output.exists()
        write_text_atomic(output, text)
        err.print(escape(f"table written to {output}" + (" (it replaced the file that was there)" if replaced else "")))
    else:
        out.file.write(text)
        out.file.flush()
    return text


def _write_plots(cells, runs, folder: Path, say: bool = True) -> list[Path]:
    """Every figure of `runs` and the comparison into `folder`; one line says how many, and how
    many of them replaced a figure of the same name."""
    from rich.markup import escape

    from clipclap_cli.report import plots

    before = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    stems = plots.plot_stems(runs)
    written = [p for r in runs for p in plots.write_plots(r, folder, stems[str(r.path)])]
    comparison = plots.write_comparison(cells, folder)
    written = ([comparison] if comparison else []) + written
    if say:
        replaced = sum(p.name in before for p in written)
        err.print(escape(f"{len(written)} plots written to {folder}"
                         + (f" ({replaced} replaced figures of the same name there)" if replaced else "")))
    return written


def _html_page(cells, metrics, runs, folder: Path | None) -> str:
    """The standalone page: the comparison and, per row, the figures of its first seed, embedded
    (every run's figures go to `folder` with --plots; without it they are drawn in a temporary
    folder); without matplotlib the page says how to get them."""
    import importlib.util
    import tempfile

    from clipclap_cli.report.html_page import page
    from clipclap_cli.report.plots import plot_stems

    if folder is None and importlib.util.find_spec("matplotlib") is None:
        return page(cells, metrics, runs, figures_note="No figures: pip install 'clipclap[plots]' for them.")
    firsts = {c.runs[0] for c in cells if c.runs}
    shown = [r for r in runs if str(r.path) in firsts]
    note = "The figures of each row's first seed" + ("" if len(shown) == len(runs) else
                                                      f" ({len(shown)} of {len(runs)} runs)")
    if folder is not None:
        written = _write_plots(cells, runs, folder)
        stems = plot_stems(runs)
        picked = [p for p in written if p.name.startswith("comparison")
                  or any(p.name.startswith(stems[str(r.path)]) for r in shown)]
        return page(cells, metrics, runs, picked, note + f"; every run's are in {folder}.")
    with tempfile.TemporaryDirectory(prefix="clipclap-report-") as tmp:
        return page(cells, metrics, runs, _write_plots(cells, shown, Path(tmp), say=False), note + ".")


def check_output_place(path: Path) -> None:
    """Refuse an output (a table, figures, results) that would land inside a run folder or a
    feature store: a report written over a run's or a store's own file would destroy it."""
    from clipclap_cli.errors import RunError
    from clipclap_cli.runs.folder import run_around, store_around

    store = store_around(path)
    if store is not None:
        raise RunError(f"{path} is inside the feature store {store}: write it elsewhere")
    run = run_around(path)
    if run is not None:
        raise RunError(f"{path} is inside the run {run}: write it elsewhere")


def data_lines(cells) -> list[str]:
    """One line per dataset whose runs were trained on different data: the columns it became."""
    columns: dict[str, dict] = {}
    for c in cells:
        if c.data_tag:
            columns.setdefault(c.dataset.removesuffix(f" [{c.data_tag}]"), {}).setdefault(c.dataset, c)
    return [f"{base}: runs trained on {len(by)} different data (features, label embeddings or split) are "
            "separate columns, never seeds of one row: "
            + "; ".join(f"{label} ({', '.join(c.stores) or 'store not recorded'})" for label, c in by.items())
            for base, by in columns.items()]
