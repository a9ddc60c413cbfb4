"""`clipclap embed`: label embeddings of a dataset's classes from a text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import err
from ._options import DEFAULT_STORE, DatasetsOpt, StoredDatasetArg, StoreOpt, catalog, store, stored_dataset

EncoderParamOpt = Annotated[list[str], typer.Option(
    "--encoder-param", "-e", metavar="KEY=VALUE", help="Encoder parameter KEY=VALUE (or ENCODER:KEY=VALUE, as extract takes it); repeatable")]
TEXT_ENCODERS = {"clip": "clip_text", "clap": "clap_text"}


def install(app, pm) -> None:
    @app.command("embed")
    def embed(
        dataset: StoredDatasetArg = None,
        encoder: Annotated[str, typer.Option("--encoder", metavar="clip|clap", help="Text encoder: clip or clap")] = "clip",
        params: EncoderParamOpt = [],  # noqa: B006 - Typer reads the default
        prompts: Annotated[Path | None, typer.Option("--prompts", metavar="FILE", help="prompts.toml (default: the dataset's)")] = None,
        store_path: StoreOpt = DEFAULT_STORE,
        datasets_file: DatasetsOpt = None,
    ):
        """Compute label embeddings from prompts. Every template filled with each class's prompt name,
        encoded, averaged."""
        from ..console import progress
        from ..devices import check_device
        from ..embedding import embed_labels, read_templates
        from ..errors import ClipclapError, ConfigError
        from ..params import parse_params
        from ..registries import get_encoder

        if encoder not in TEXT_ENCODERS:
            raise ClipclapError(f"text encoder {encoder!r} is not available; choose {' or '.join(TEXT_ENCODERS)}")
        fs = store(store_path)
        dataset = stored_dataset(fs, dataset)
        entry = catalog(pm, datasets_file).get(dataset)
        path = prompts or (entry.resolve(entry.prompts) if entry.prompts else None)
        if path is None:
            raise ConfigError(f"dataset {dataset!r} names no prompts file; pass --prompts FILE")
        templates = read_templates(path, TEXT_ENCODERS[encoder])
        base = get_encoder(encoder, pm)
        enc = type(base)(parse_params([_own_param(pair, encoder) for pair in params], type(base).Params))
        if isinstance(getattr(enc.params, "device", None), str):
            check_device(enc.params.device, f"-e device={enc.params.device}")
        enc.check_weights()
        n = len(fs.info(dataset)["prompt_names"])
        with progress() as bar:
            task = bar.add_task(f"{encoder} label embeddings", total=n)
            matrix = embed_labels(fs, dataset, enc, templates, encoder, lambda i: bar.update(task, completed=i))
        err.print(f"{dataset}: {encoder} label embeddings {matrix.shape[0]} x {matrix.shape[1]} "
                  f"({len(templates)} templates) -> {store_path}")


def _own_param(pair: str, encoder: str) -> str:
    """-e KEY=VALUE as it is, or ENCODER:KEY=VALUE (extract's form) for this command's encoder
    without its prefix; another encoder's prefix is refused, not ignored."""
    from ..errors import ClipclapError

    name, sep, rest = pair.partition(":")
    if not sep or "=" in name:  # no prefix (a colon after '=' belongs to the value)
        return pair
    if name != encoder:
        raise ClipclapError(f"-e {pair!r} sets the {name} encoder; this command embeds with {encoder} "
                            f"(--encoder {name} to use it)")
    return rest
