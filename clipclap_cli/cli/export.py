"""`clipclap export`: a finished, evaluated run as one model file that travels (runs/model_file.py)."""

from pathlib import Path
from typing import Annotated

import typer


def install(app, pm) -> None:
    @app.command("export")
    def export(
        run_path: Annotated[Path, typer.Argument(metavar="RUN", help="A finished, evaluated run folder")],
        output: Annotated[Path, typer.Option(
            "--output", "-o", metavar="NAME.clipclap", help="The model file to write (whole or not at all)")],
        store_path: Annotated[str | None, typer.Option(
            "--store", "-s", metavar="PATH|URL", help="Where the run's dataset lies, if not where it was trained")] = None,
    ):
        """Write a run as one model file. It holds both stages' weights, beta*, the classes and
        their label embeddings, the encoders and frame recipe of its features, its test figures.
        `clipclap predict` and `clipclap evaluate` read it with no run folder and no store of the run's."""
        from rich.markup import escape

        from clipclap_cli.cli._options import store
        from clipclap_cli.cli.console import err
        from clipclap_cli.errors import ClipclapError
        from clipclap_cli.files import replacing
        from clipclap_cli.runs.config import load_spec
        from clipclap_cli.runs.finding import check_output_place, find_run
        from clipclap_cli.runs.model_file import SUFFIX, model_file_bytes
        from clipclap_cli.runs.trained import load_run

        if output.suffix != SUFFIX:
            raise ClipclapError(f"-o {output}: name the model file NAME{SUFFIX}")
        if output.is_dir():
            raise ClipclapError(f"-o {output} is a folder: name the model file to write")
        check_output_place(output)
        run = find_run(run_path)
        model, _ = load_run(run, pm, None if store_path is None else store(store_path))
        blob = model_file_bytes(model, load_spec(run)[1].get("data_digest"))
        replaced = output.exists()
        with replacing(output) as tmp:
            tmp.write_bytes(blob)
        err.print(escape(f"{run} -> {output} ({len(blob) / 1e6:.1f} MB: head {model.spec.head}, "
                         f"{len(model.class_names)} classes, beta* {model.beta:.4f})"
                         + (" (replacing the file that was there)" if replaced else "")))
