"""Reusable option types and small helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StoreOpt = Annotated[
    str,
    typer.Option("--store", "-s", envvar="CLIPCLAP_STORE",
                 help="Feature store: a zarr folder or an fsspec URL (s3://…); default ./clipclap.zarr"),
]
DatasetsOpt = Annotated[
    Path | None,
    typer.Option("--datasets", envvar="CLIPCLAP_DATASETS", help="A datasets.toml whose entries add to or override the project's"),
]
DatasetArg = Annotated[str, typer.Argument(help="Dataset name (see `clipclap datasets list`)")]
ParamOpt = Annotated[list[str], typer.Option("--param", "-p", help="Head parameter KEY=VALUE; repeatable")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (default: the dataset's, 42)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N")]

DEFAULT_STORE = "clipclap.zarr"


def catalog(pm, datasets_file: Path | None):
    from ..config import load_catalog

    return load_catalog(pm, datasets_file)


def store(where: str):
    from ..store import FeatureStore

    return FeatureStore(where)

