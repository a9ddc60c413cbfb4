"""`clipclap predict`: the classes a trained model (a run, a model file, or the training-free
zero-shot head) gives videos, stored or new, best first, as a table, CSV or JSON."""

import os
from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import DEFAULT_STORE, DatasetsOpt, ParamOpt, catalog, split_option, store, whole_in
from clipclap_cli.cli.console import err, out


def install(app, pm) -> None:
    @app.command("predict")
    def predict(
        model_path: Annotated[Path | None, typer.Argument(
            metavar="[MODEL]", help="A run folder or a model file (`clipclap export`); omitted with --head zeroshot")] = None,
        dataset: Annotated[str | None, typer.Option(
            "--dataset", "-d", metavar="NAME", help="Score the stored features of this dataset")] = None,
        partitions: Annotated[list[str], typer.Option(
            "--partition", metavar="P",
            help="With --dataset: a partition of the split (repeatable; `all`: every video); default: the test ones")] = [],  # noqa: B006 - Typer reads the default
        videos: Annotated[Path | None, typer.Option(
            "--videos", metavar="DIR", help="Score these videos (features extracted as the model's were; needs [extract])")] = None,
        classes: Annotated[str | None, typer.Option(
            "--classes", metavar="A,B,C", help="Class names to choose from (default: the model's classes)")] = None,
        classes_file: Annotated[Path | None, typer.Option(
            "--classes-file", metavar="FILE", help="Class names to choose from, one a line")] = None,
        prompts: Annotated[Path | None, typer.Option(
            "--prompts", metavar="FILE", help="Prompt templates for --classes (a prompts.toml); default: the model's")] = None,
        head: Annotated[str | None, typer.Option(
            "--head", metavar="zeroshot|NAME",
            help="`zeroshot`: CLIP/CLAP zero-shot classification, no training (no MODEL); with --stage1: their head")] = None,
        top_k: Annotated[int, typer.Option(
            "--top-k", "-k", metavar="K", callback=whole_in(1, 1_000_000), help="Classes per video")] = 5,
        fmt: Annotated[str | None, typer.Option(
            "--format", "-f", metavar="table|csv|json", help="Output format (default: the extension of -o's file, else table)")] = None,
        output: Annotated[Path | None, typer.Option(
            "--output", "-o", metavar="FILE", help="Write here (whole or not at all) instead of stdout")] = None,
        workers: Annotated[int, typer.Option(
            "--workers", metavar="N", callback=whole_in(0, 1024), help="With --videos: decoding processes (0: in this one)")] = 0,
        stage1: Annotated[Path | None, typer.Option(
            "--stage1", metavar="FILE|DIR", help="Instead of MODEL: published checkpoints, as `evaluate` takes them "
                                                 "(with --stage2, --dataset and --head NAME, default clipclap)")] = None,
        stage2: Annotated[Path | None, typer.Option("--stage2", metavar="FILE|DIR", help="See --stage1")] = None,
        params: ParamOpt = [],  # noqa: B006 - Typer reads the default
        split: split_option("Checkpoints: the split whose validation calibrates beta (default: the dataset's)") = None,
        legacy: Annotated[bool, typer.Option(
            "--legacy-label-order", help="Checkpoints: the reference's sorted-key label embeddings")] = False,
        datasets_file: DatasetsOpt = None,
        store_path: Annotated[str | None, typer.Option(
            "--store", "-s", metavar="PATH|URL",
            help="Feature store of --dataset; default: a run's own store, else $CLIPCLAP_STORE or ./clipclap.zarr")] = None,
        encoder_params: Annotated[list[str], typer.Option(
            "--encoder-param", "-e", metavar="ENCODER:KEY=VALUE",
            help="With --head zeroshot and no --dataset: a parameter of its clip or clap encoder, as extract takes it "
                 "(e.g. clip:checkpoint=PATH); repeatable")] = [],  # noqa: B006 - Typer reads the default
    ):
        """Rank classes for videos with a trained model. The top K with their scores, and whether
        the model trained on each (the run's calibration bias beta applies to those) or it is new.

        JSON rows: {"id", "label" (stored videos), "predictions": [{"class", "score", "seen"}]}, best first.
        """
        from rich.markup import escape

        from clipclap_cli.errors import ClipclapError
        from clipclap_cli.files import write_text_atomic
        from clipclap_cli.predict.output import output_format, render, table_cells
        from clipclap_cli.predict.samples import check_partitions
        from clipclap_cli.runs.finding import check_output_place

        # every check of what was asked before any work, and nothing written before the end
        kind = output_format(fmt, output)
        if output is not None:
            check_output_place(output)
            if output.is_dir():
                raise ClipclapError(f"{output} is a folder: -o names the file to write")
        checkpoints = stage1 is not None or stage2 is not None
        if checkpoints:
            if stage1 is None or stage2 is None or model_path is not None or dataset is None:
                raise ClipclapError("published checkpoints are --stage1 and --stage2 with --dataset, and no MODEL")
        elif head not in (None, "zeroshot"):
            raise ClipclapError(f"--head {head!r}: only `zeroshot` (no training) goes without MODEL; "
                                "a trained head is named by its run or model file")
        elif (model_path is None) == (head is None):
            raise ClipclapError("name a MODEL (a run folder or a model file), or pass --head zeroshot without one")
        elif params or split or legacy:
            raise ClipclapError("-p, --split and --legacy-label-order go with --stage1/--stage2 (a model records them)")
        if (videos is None) == (dataset is None) and not (videos is not None and head == "zeroshot"):
            raise ClipclapError("say what to score: --dataset NAME (stored features) or --videos DIR")
        if partitions and dataset is None:
            raise ClipclapError("--partition goes with --dataset")
        check_partitions(tuple(partitions))
        names = None
        if classes is not None or classes_file is not None:
            from clipclap_cli.predict.classes import read_class_names

            names = read_class_names(classes, classes_file)
        elif prompts is not None:
            raise ClipclapError("--prompts embeds the names of --classes or --classes-file; give one of them")
        if encoder_params and (head is None or dataset is not None):
            raise ClipclapError("-e sets the encoders of --head zeroshot without --dataset; a model or a dataset "
                                "records the encoders of its features")
        if videos is not None:
            from clipclap_cli.extract.video_features import video_files

            paths = video_files(videos)
        else:
            paths = None

        fs = None
        if dataset is not None:
            where = store_path or (_run_store(model_path) if model_path is not None else None)
            fs = store(where or os.environ.get("CLIPCLAP_STORE") or DEFAULT_STORE)
        if checkpoints:
            from clipclap_cli.runs.trained import load_checkpoints

            entry = catalog(pm, datasets_file).get(dataset)
            model = load_checkpoints(fs, entry.name, split or entry.split, head or "clipclap", params, stage1, stage2,
                                     pm, legacy_label_order=legacy)
        elif head is not None:
            from clipclap_cli.cli._options import params_by_encoder
            from clipclap_cli.predict.zeroshot import zeroshot_model

            model = zeroshot_model(pm, fs if dataset is not None else None, dataset,
                                   encoder_params=params_by_encoder(pm, encoder_params))
        else:
            from clipclap_cli.runs.trained import load_trained

            model = load_trained(model_path, pm, None if store_path is None else fs)
        if names is None and not model.class_names:
            raise ClipclapError("name the classes to choose from: --classes or --classes-file "
                                "(the zero-shot head without --dataset has none of its own)")
        from clipclap_cli.python_api.model import Model

        scorer = Model(model, pm)  # the rows the Python API gives: one composition of model, samples and classes
        if paths is not None:
            encoders = ", ".join(f"{(model.features.get(m) or {}).get('encoder', '?')} for {m}" for m in ("video", "audio"))
            err.print(escape(f"reading {len(paths)} videos: loading models ({encoders}) with the first ones"))

            def on_progress(done: int, total: int) -> None:  # a line per chunk of videos: also readable piped
                if done < total:
                    err.print(f"  {done}/{total} videos read")

            rows = scorer.predict_videos(paths, names, top_k, prompts, workers, on_progress=on_progress)
        else:
            rows = scorer.predict_dataset(fs, dataset, tuple(partitions) or None, names, top_k, prompts=prompts)
        failed = [row["id"] for row in rows if "error" in row]

        text = render(rows, kind) if output is not None or kind != "table" else None
        if output is not None:
            write_text_atomic(output, text)
        elif text is not None:
            out.file.write(text)
            out.file.flush()
        else:
            from clipclap_cli.cli.console import table

            out.print(table(None, *table_cells(rows)))
        chosen = len(names) if names is not None else len(model.class_names)
        line = f"{len(rows) - len(failed)} videos scored against {chosen} classes by {model.source}"
        if failed:
            line += f"; {len(failed)} not read ({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''})"
        err.print(escape(line + (f" -> {output}" if output is not None else "")))


def _run_store(model_path: Path) -> str | None:
    """The store a run recorded (where its dataset lies); None for a model file, which has none."""
    from clipclap_cli.runs.config import load_spec
    from clipclap_cli.runs.finding import has_config

    if model_path.is_dir() and has_config(model_path):
        return load_spec(model_path)[1].get("store")
    return None
