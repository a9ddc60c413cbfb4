"""Reusable option types and small helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def checked_name(kind: str):
    """A Typer callback that lets through a name following the naming rule (`names.py`), or None;
    a bad name ends the command in one line naming it and the rule."""

    def callback(value: str | None) -> str | None:
        from clipclap_cli.names import check_name

        return value if value is None else check_name(kind, value)

    return callback


def whole_in(low: int, high: int):
    """A Typer callback that lets through a whole number from `low` to `high` (Typer's own
    min/max would print the range into --help as `[1<=x<=...]`); else one line naming it."""

    def callback(value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise typer.BadParameter(f"{value} is not a whole number from {low} to {high:,}")
        return value

    return callback


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
DatasetArg = Annotated[str, typer.Argument(metavar="DATASET", callback=checked_name("dataset"),
                                           help="Dataset name (see `clipclap datasets list`)")]
StoredDatasetArg = Annotated[
    str | None,
    typer.Argument(metavar="DATASET", callback=checked_name("dataset"),
                   help="Dataset name (see `clipclap datasets list`); default: the store's only dataset"),
]
ParamOpt = Annotated[list[str], typer.Option("--param", "-p", metavar="KEY=VALUE", help="Head parameter KEY=VALUE; repeatable")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout")]


def split_option(help: str):
    """The `--split NAME` option, its name checked; `help` says what the command does with it."""
    return Annotated[str | None, typer.Option("--split", metavar="NAME", callback=checked_name("split"), help=help)]


SeedOpt = Annotated[int | None, typer.Option("--seed", metavar="N", callback=whole_in(0, 2**32 - 1),
                                             help="Random seed (default: the dataset's, 42)")]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda or cuda:N")]

ReplaceOpt = Annotated[bool, typer.Option(
    "--replace", help="Replace a stored dataset with other data even when splits or label embeddings written for "
                      "it no longer apply (they are dropped)")]

DEFAULT_STORE = "clipclap.zarr"


def report_ingest(result, store_path: str) -> None:
    """One line on stderr for a dataset written (or found unchanged), with what of its splits and
    label embeddings was kept or dropped."""
    from clipclap_cli.cli.console import err

    dataset = result.dataset
    if result.unchanged:
        err.print(f"{dataset}: already in the store from the same data (unchanged)"
                  + (f" (its missing split {result.split} written)" if result.split else ""))
        return

    def names(items: tuple[str, ...]) -> str:
        return ", ".join(("split " if i.startswith("split:") else "label embeddings ") + i.partition(":")[2]
                         for i in items)

    err.print(f"{dataset}: {result.videos} videos, {result.classes} classes -> {store_path}"
              + (f" (split {result.split} written)" if result.split else "")
              + (f"; kept {names(result.kept)}" if result.kept else "")
              + (f"; dropped {names(result.dropped)}" if result.dropped else ""))


def catalog(pm, datasets_file: Path | None):
    from clipclap_cli.data.datasets_toml import load_catalog

    return load_catalog(pm, datasets_file)


def _wait_seconds(value: float | None) -> float | None:
    """--wait: a finite number of seconds from 0 to a week."""
    import math

    if value is not None and not (math.isfinite(value) and 0 <= value <= 7 * 24 * 3600):
        raise typer.BadParameter(f"{value} is not a number of seconds from 0 to 604800 (a week)")
    return value


WaitOpt = Annotated[
    float | None,
    typer.Option("--wait", metavar="SECONDS", callback=_wait_seconds,
                 help="While another command writes the store, wait this long for it (default 600; 0: fail at once)"),
]


def store(where: str, wait: float | None = None):
    """The store at `where`; a write waits up to `wait` seconds (default: the store's) for another
    command writing it, saying once on stderr who that is."""
    from clipclap_cli.cli.console import err
    from clipclap_cli.store.feature_store import DEFAULT_WAIT_S, FeatureStore

    def on_wait(holder: str) -> None:
        err.print(f"waiting for another command that writes the store {where}: {holder}", markup=False,
                  highlight=False)

    return FeatureStore(where, wait_s=DEFAULT_WAIT_S if wait is None else wait, on_wait=on_wait)


def stored_dataset(fs, dataset: str | None) -> str:
    """`dataset`, or the one dataset the store holds when none is named (`clipclap train --stage 1`)."""
    from clipclap_cli.errors import ClipclapError

    if dataset is not None:
        return dataset
    held = fs.datasets()
    if len(held) == 1:
        return held[0]
    if not held:
        raise ClipclapError(f"name a dataset: the store {fs} holds none yet (`clipclap import` or `clipclap extract` "
                            "writes one)")
    raise ClipclapError(f"name a dataset: the store {fs} holds {len(held)} ({', '.join(held)})")


def launcher_option(help: str):
    """The `--launcher local|slurm` option; `help` says what each does for the command."""
    return Annotated[str, typer.Option("--launcher", metavar="local|slurm", help=help)]


# What each SLURM task asks for (`train` and `extract` with `--launcher slurm`; docs/cluster.md)
PartitionOpt = Annotated[str | None, typer.Option(
    "--partition", metavar="NAME", help="SLURM partition (default: the [slurm] table's, else the cluster's)")]
TimeOpt = Annotated[int | None, typer.Option(
    "--time", metavar="MIN", callback=whole_in(1, 10**7),
    help="SLURM time limit per task, in minutes (default: the partition's)")]
GpusOpt = Annotated[int | None, typer.Option("--gpus", metavar="N", callback=whole_in(1, 1024), help="GPUs per SLURM task")]
CpusOpt = Annotated[int | None, typer.Option(
    "--cpus", metavar="N", callback=whole_in(1, 4096), help="CPU cores per SLURM task")]
MemGbOpt = Annotated[int | None, typer.Option(
    "--mem-gb", metavar="N", callback=whole_in(1, 10**6), help="Memory per SLURM task, in GB")]
ArrayParallelismOpt = Annotated[int | None, typer.Option(
    "--array-parallelism", metavar="N", callback=whole_in(1, 10**6), help="SLURM tasks running at once, at most")]
SbatchOpt = Annotated[list[str], typer.Option(
    "--sbatch", metavar="--KEY=VALUE", help="Extra sbatch argument; repeatable")]
SLURM_OPTIONS = "--partition, --time, --gpus, --cpus, --mem-gb, --array-parallelism, --sbatch"


def cluster_settings(launcher: str, datasets_file: Path | None, others: dict[str, bool], **given):
    """The SLURM settings of `--launcher slurm` (the [slurm] table of the datasets file, the
    options `given` overriding it), or None for `--launcher local`. The SLURM options with
    `--launcher local` are refused in one line, with `others` ({"--no-wait": given?}): the
    command's own options that only mean something on SLURM."""
    from clipclap_cli.errors import ClipclapError

    if launcher not in ("local", "slurm"):
        raise ClipclapError(f"--launcher must be local or slurm, not {launcher!r}")
    if launcher == "local":
        if any(v not in (None, ()) for v in given.values()) or any(others.values()):
            raise ClipclapError(f"{SLURM_OPTIONS} and {' and '.join(others)} are options of --launcher slurm")
        return None
    from clipclap_cli.cluster import settings_from
    from clipclap_cli.data.datasets_toml import read_toml_text

    table = read_toml_text(datasets_file, "datasets file").get("slurm", {}) if datasets_file else {}
    return settings_from(table, f"{datasets_file} [slurm]", **given)


def params_by_encoder(pm, pairs: list[str]) -> dict[str, list[str]]:
    """-e ENCODER:KEY=VALUE, grouped by encoder: {encoder: ["KEY=VALUE", ...]}."""
    from clipclap_cli.errors import ClipclapError
    from clipclap_cli.plugins.registry import list_encoders

    known = set(list_encoders(pm).names())
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, rest = pair.partition(":")
        if not sep or name not in known:
            raise ClipclapError(f"-e {pair!r}: expected ENCODER:KEY=VALUE with ENCODER one of {', '.join(sorted(known))}")
        grouped.setdefault(name, []).append(rest)
    return grouped
