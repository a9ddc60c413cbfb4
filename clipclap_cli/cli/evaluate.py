"""`clipclap evaluate`: the test protocol for a run, or for the reference's checkpoints."""

import os
from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import DEFAULT_STORE, DatasetsOpt, DeviceOpt, ParamOpt, catalog, split_option, store
from clipclap_cli.cli.console import err, figures_line, out, test_figures


def install(app, pm) -> None:
    @app.command("evaluate")
    def evaluate(
        target: Annotated[str, typer.Argument(metavar="RUN|MODEL|DATASET", help="A run folder, a model file (`clipclap export`), or a DATASET with --stage1/--stage2")],
        stage1: Annotated[Path | None, typer.Option("--stage1", metavar="FILE|DIR", help="Stage-1 model: a reference checkpoint (.pt), a clipclap model file (.safetensors), or the reference's stage-1 experiment folder")] = None,
        stage2: Annotated[Path | None, typer.Option("--stage2", metavar="FILE|DIR", help="Stage-2 model: a reference checkpoint (.pt), a clipclap model file (.safetensors), or the reference's stage-2 experiment folder")] = None,
        head: Annotated[str, typer.Option("--head", metavar="NAME", help="Fusion head of the checkpoints")] = "clipclap",
        params: ParamOpt = [],  # noqa: B006 - Typer reads the default
        split: split_option("Protocol split (default: the dataset's)") = None,
        beta_grid: Annotated[str, typer.Option("--beta-grid", metavar="START:STOP:POINTS", help="Checkpoints: bias grid START:STOP:POINTS")] = "0:5:76",
        legacy: Annotated[bool, typer.Option(
            "--legacy-label-order",
            help="Checkpoints: the reference's sorted-key label embeddings, which its ActivityNet and "
                 "VGGSound models were trained with")] = False,
        output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the results JSON here, as a run's results.json holds them (fractions; `units` says so); a file there is replaced, and the closing line says so")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the results JSON on stdout")] = False,
        device: DeviceOpt = "cpu",
        store_path: Annotated[str | None, typer.Option(
            "--store", "-s", metavar="PATH|URL",
            help="Feature store (zarr folder or fsspec URL); default: a run's own store; with checkpoints "
                 "$CLIPCLAP_STORE, else ./clipclap.zarr")] = None,
        datasets_file: DatasetsOpt = None,
    ):
        """Test S, U, HM and ZSL of a run or of reference checkpoints. beta* from the stage-1
        model on validation, applied to the stage-2 model on test.

        A run is evaluated on the store it recorded when trained, not on $CLIPCLAP_STORE: a global
        default must not silently swap the features of a run that names its own (--store does).
        """
        from rich.markup import escape

        from clipclap_cli.errors import RunError
        from clipclap_cli.files import json_text
        from clipclap_cli.report.percent import as_percent
        from clipclap_cli.runs.files import RESULTS
        from clipclap_cli.runs.finding import check_output_place, find_run
        from clipclap_cli.runs.folder import check_run_folder
        from clipclap_cli.runs.plan import parse_grid
        from clipclap_cli.runs.reference_checkpoints import evaluate_checkpoints
        from clipclap_cli.runs.results import evaluate_run

        if (stage1 is None) != (stage2 is None):
            raise RunError("evaluating checkpoints needs both --stage1 and --stage2")
        if output is not None:  # before any work: a run's or a store's own file is never overwritten
            check_output_place(output)
        paper = None
        if stage1 is not None:
            entry = catalog(pm, datasets_file).get(target)
            store_path = store_path or os.environ.get("CLIPCLAP_STORE") or DEFAULT_STORE
            results = evaluate_checkpoints(store(store_path), entry.name, split or entry.split, head, params,
                                           stage1, stage2, device, pm, parse_grid(beta_grid), legacy)
            if stage1.is_dir() or stage2.is_dir():  # say which files the folders gave
                (one, two), (e1, e2) = results["checkpoints"].values(), results["checkpoint_epochs"]
                err.print(f"stage 1: {one} (epoch {e1}); stage 2: {two} (epoch {e2})")
            where = None
            if not params and results["split"] == entry.split:  # the published models' setting
                paper = entry.published.get(head)
        else:
            if legacy:  # a run records its label order; evaluating it with another would mix the two
                raise RunError("--legacy-label-order is for checkpoints; a run uses the label order it was trained with")
            if Path(target).is_file():  # a model file (`clipclap export`): its dataset in --store
                from clipclap_cli.runs.model_file import evaluate_model_file

                store_path = store_path or os.environ.get("CLIPCLAP_STORE") or DEFAULT_STORE
                results, where = evaluate_model_file(Path(target), store(store_path), pm), None
            else:
                run = find_run(Path(target))
                check_run_folder(run)  # it writes results.json there: never into a store
                results = evaluate_run(run, None if store_path is None else store(store_path), pm)
                where = run / RESULTS
        if output is not None:
            where = f"{where} and {output}" if where else output
            if _write_results(output, results):
                where = f"{where} (replacing the file that was there)"
        if as_json:  # for people and scripts alike: percent, as every table shows (`units` says so)
            out.file.write(json_text(as_percent(results), what="the results"))
            out.file.flush()
        err.print(escape(f"{results['dataset']}: {test_figures(results)}" + (f" -> {where}" if where else "")))
        if paper:  # the paper's figures for the head on this dataset (datasets.toml), to compare with
            err.print(f"the paper: {figures_line(paper)}")


def _write_results(path: Path, results: dict) -> bool:
    """`results` as JSON to `path`, whole or not at all; whether it replaced a file there."""
    from clipclap_cli.files import write_json

    path.parent.mkdir(parents=True, exist_ok=True)  # a folder refused here is the system's one line
    replaced = path.exists()
    write_json(path, results)
    return replaced

