"""`clipclap embed`: label embeddings of a dataset's classes from a text encoder."""

from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import (
    DEFAULT_STORE,
    DatasetsOpt,
    StoredDatasetArg,
    StoreOpt,
    WaitOpt,
    catalog,
    store,
    stored_dataset,
)
from clipclap_cli.cli.console import err

EncoderParamOpt = Annotated[list[str], typer.Option(
    "--encoder-param", "-e", metavar="KEY=VALUE", help="Encoder parameter KEY=VALUE (or ENCODER:KEY=VALUE, as extract takes it); repeatable")]


def install(app, pm) -> None:
    @app.command("embed")
    def embed(
        dataset: StoredDatasetArg = None,
        encoder: Annotated[str, typer.Option("--encoder", metavar="NAME",
                                             help="Text encoder: clip, clap or a plugin's")] = "clip",
        part: Annotated[str | None, typer.Option("--as", metavar="clip|clap",
                                                 help="The label embedding it writes (default: the encoder's name)")] = None,
        params: EncoderParamOpt = [],  # noqa: B006 - Typer reads the default
        prompts: Annotated[Path | None, typer.Option("--prompts", metavar="FILE", help="prompts.toml (default: the dataset's)")] = None,
        store_path: StoreOpt = DEFAULT_STORE,
        wait: WaitOpt = None,
        datasets_file: DatasetsOpt = None,
    ):
        """Compute label embeddings from prompts. Every template filled with each class's prompt name,
        encoded, averaged."""
        from clipclap_cli.api import LABEL_PARTS, offers_label_embeddings
        from clipclap_cli.cli.console import progress
        from clipclap_cli.data.label_embeddings import embed_labels, read_templates
        from clipclap_cli.devices import check_device
        from clipclap_cli.errors import ClipclapError, ConfigError
        from clipclap_cli.params import parse_params
        from clipclap_cli.plugins.registry import get_encoder

        base = get_encoder(encoder, pm)
        if not offers_label_embeddings(base):
            raise ClipclapError(f"encoder {encoder!r} computes no label embeddings (it has no label_embedding)")
        part = part or base.encoder_id
        if part not in LABEL_PARTS:
            raise ClipclapError(f"--as {part!r}: the label embeddings are {' and '.join(LABEL_PARTS)}; "
                                f"say which one encoder {encoder!r} writes (--as clip or --as clap)")
        fs = store(store_path, wait)
        dataset = stored_dataset(fs, dataset)
        entry = catalog(pm, datasets_file).get(dataset)
        path = prompts or (entry.resolve(entry.prompts) if entry.prompts else None)
        if path is None:
            raise ConfigError(f"dataset {dataset!r} names no prompts file: pass --prompts FILE, or set `prompts` "
                              f"in its datasets entry (a TOML file with `templates = [...]` under [{part}_text], "
                              "each with {} for the class name)")
        templates = read_templates(path, f"{part}_text")
        enc = type(base)(parse_params([_own_param(pair, encoder) for pair in params], type(base).Params))
        if isinstance(getattr(enc.params, "device", None), str):
            check_device(enc.params.device, f"-e device={enc.params.device}")
        enc.check_weights()
        n = len(fs.info(dataset)["prompt_names"])
        with fs.writer(), progress() as bar:  # the classes embedded are those of the version written to
            task = bar.add_task(f"{part} label embeddings", total=n)
            matrix = embed_labels(fs, dataset, enc, templates, part, lambda i: bar.update(task, completed=i))
        source = "" if part == base.encoder_id else f" from {base.encoder_id}"
        err.print(f"{dataset}: {part} label embeddings{source} {matrix.shape[0]} x {matrix.shape[1]} "
                  f"({len(templates)} template{'s' * (len(templates) != 1)}) -> {store_path}")


def _own_param(pair: str, encoder: str) -> str:
    """-e KEY=VALUE as it is, or ENCODER:KEY=VALUE (extract's form) for this command's encoder
    without its prefix; another encoder's prefix is refused, not ignored."""
    from clipclap_cli.errors import ClipclapError

    name, sep, rest = pair.partition(":")
    if not sep or "=" in name:  # no prefix (a colon after '=' belongs to the value)
        return pair
    if name != encoder:
        raise ClipclapError(f"-e {pair!r} sets the {name} encoder; this command embeds with {encoder} "
                            f"(--encoder {name} to use it)")
    return rest
