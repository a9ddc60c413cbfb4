"""`clipclap report`: the paper-style results table over runs, and calibration plots."""

from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import catalog, datasets_option
from clipclap_cli.cli.console import err, out


def install(app, pm) -> None:
    @app.command("report")
    def report(
        runs: Annotated[list[Path] | None, typer.Argument(metavar="RUN", help="Run folders, or folders to search (default: --runs-dir)")] = None,
        fmt: Annotated[str | None, typer.Option("--format", "-f", metavar="FORMAT", help="markdown, latex, html, csv or json (default: by the extension of --output: .md, .tex, .html, .csv, .json; else markdown)")] = None,
        su: Annotated[bool, typer.Option("--su/--no-su", help="S and U columns before HM and ZSL (--no-su: HM and ZSL only)")] = True,
        plots: Annotated[Path | None, typer.Option("--plots", metavar="DIR", help="Write the figures here as PNG (bias curves, per-class accuracy, training curves, a comparison); --format html embeds them")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the table to this file, in the format its extension names (whole or not at all; a file there is replaced, and the command says so)")] = None,
        runs_dir: Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="Searched when no RUN is given")] = Path("runs"),
        published: Annotated[bool, typer.Option("--published", help="Add the paper's results of the same datasets, as rows 'HEAD (paper)'")] = False,
        against: Annotated[str | None, typer.Option("--against", metavar="METHOD", help="The row every other is compared with, by a paired t-test over the seeds both have: a row's name, or a head's where the table has one row of it (default: clipclap); a name that matches no row is refused")] = None,
        datasets_file: datasets_option("With --published: a datasets.toml whose published results add to or "
                                       "override the project's") = None,
        layout: Annotated[str, typer.Option("--layout", metavar="LAYOUT", help="default, or paper: the datasets as column groups in the paper's order (VGGSound, UCF, ActivityNet, then the others), one n per row, the published rows (--published) under a rule; markdown, latex and html")] = "default",
        caption: Annotated[str | None, typer.Option("--caption", metavar="TEXT", help="LaTeX: the table's caption, as plain text (default: the datasets and metrics shown)")] = None,
        label: Annotated[str | None, typer.Option("--label", metavar="NAME", help="LaTeX: the table's \\label (default: tab:clipclap-results)")] = None,
    ):
        """Table of S/U/HM/ZSL per method and dataset. Seeds grouped as mean ± std, n per entry.

        Each row is compared with the --against row of its dataset (clipclap by default) by a
        paired t-test over the seeds both have; values that do not differ at p < 0.05 are
        marked †. Markdown and HTML print the 95 % intervals (Student's t, cut to 0-100) and the
        p-values after the table, CSV and JSON carry them per metric; ‡ marks what rests on 2
        seeds, § a test where a row has no spread. --format html is a standalone page with the
        figures embedded; -o FILE picks the format by its extension. --format latex is a table
        float to \\input (booktabs and graphicx): caption, label, short row names with their
        settings and the notes under the table, scaled down to the line only where it would not
        fit (a table of several datasets is a table*, across a two-column article)."""
        from clipclap_cli.errors import RunError

        if not runs and not runs_dir.exists():  # the default, searched: say so rather than "no such run"
            raise RunError(f"no runs folder {runs_dir} (searched when no RUN is given; `clipclap train` writes "
                           "runs there, --runs-dir names another)")
        paper = {e.name: {head: values | ({"seeds": e.published_seeds[head]} if head in e.published_seeds else {})
                          for head, values in e.published.items()}
                 for e in catalog(pm, datasets_file)} if published else None
        print_report(runs or [runs_dir], fmt, su, plots, output, paper, against, layout, caption, label)


def print_report(paths: list[Path], fmt: str | None = None, su: bool = True, plots: Path | None = None,
                 output: Path | None = None, published: dict[str, dict] | None = None,
                 against: str | None = None, layout: str = "default", caption: str | None = None,
                 label: str | None = None) -> str:
    """Print the report of `paths` (`report.assemble.make_report`) to stdout, or write it to
    `output`, in `fmt` (None: by `output`'s extension, else markdown); optionally write plots.
    With `published` ({dataset: {head: {metric: percent, "seeds": [..] where known}}}), the paper's rows join the table;
    `layout`, `caption` and `label` as `report.tables.render` takes them. What the report has to
    say goes to stderr, one line each."""
    from rich.markup import escape

    from clipclap_cli.report.assemble import make_report
    from clipclap_cli.report.tables import check_layout, pick_format
    from clipclap_cli.runs.finding import check_output_place

    def say(text: str, label: str | None = None) -> None:
        err.print(f"[yellow]{label}:[/yellow] {escape(text)}" if label else escape(text))

    fmt = pick_format(fmt, output)  # before anything is read
    check_layout(fmt, layout, caption, label)
    for place in (output, plots):
        if place is not None:
            check_output_place(place)
    if plots is not None:  # a missing extra is the command's one line, before any note on the runs
        from clipclap_cli.extras import need

        need("matplotlib", "plots", "report --plots")
    text = make_report(paths, say, fmt, su, plots, published, against, layout, caption, label)
    if output is not None:
        from clipclap_cli.files import write_text_atomic

        output.parent.mkdir(parents=True, exist_ok=True)  # a folder refused here is the system's one line
        replaced = output.exists()
        write_text_atomic(output, text)
        say(f"table written to {output}" + (" (it replaced the file that was there)" if replaced else ""))
    else:
        out.file.write(text)
        out.file.flush()
    return text
