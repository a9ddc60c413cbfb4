"""Reusable option types and small helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StoreOpt = Annotated[
    str,
    typer.Option("--store", "-s", metavar="PATH|URL", envvar="CLIPCLAP_STORE",
                 help="Feature store: a zarr folder or an fsspec URL (s3://bucket/x.zarr)"),
]


def datasets_option(help: str = "A datasets.toml whose entries add to or override the project's"):
    """The `--datasets FILE` option (env CLIPCLAP_DATASETS); a command that reads only part of
    the file says which part in `help`."""
    return Annotated[Path | None, typer.Option("--datasets", metavar="FILE", envvar="CLIPCLAP_DATASETS", help=help)]


DatasetsOpt = datasets_option()
DatasetArg = Annotated[str, typer.Argument(metavar="DATASET", help="Dataset name (see `clipclap datasets list`)")]
StoredDatasetArg = Annotated[
    str | None,
    typer.Argument(metavar="DATASET", help="Dataset name (see `clipclap datasets list`); default: the store's only dataset"),
]
ParamOpt = Annotated[list[str], typer.Option("--param", "-p", metavar="KEY=VALUE", help="Head parameter KEY=VALUE; repeatable")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout")]
SeedOpt = Annotated[int | None, typer.Option("--seed", metavar="N", help="Random seed (default: the dataset's, 42)")]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda or cuda:N")]

DEFAULT_STORE = "clipclap.zarr"


def catalog(pm, datasets_file: Path | None):
    from ..config import load_catalog

    return load_catalog(pm, datasets_file)


def store(where: str):
    from ..store import FeatureStore

    return FeatureStore(where)


def stored_dataset(fs, dataset: str | None) -> str:
    """`dataset`, or the one dataset the store holds when none is named (`clipclap train --stage 1`)."""
    from ..errors import ClipclapError

    if dataset is not None:
        return dataset
    held = fs.datasets()
    if len(held) == 1:
        return held[0]
    if not held:
        raise ClipclapError(f"name a dataset: the store {fs} holds none yet (`clipclap import` or `clipclap extract` "
                            "writes one)")
    raise ClipclapError(f"name a dataset: the store {fs} holds {len(held)} ({', '.join(held)})")
