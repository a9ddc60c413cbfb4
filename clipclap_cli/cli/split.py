"""`clipclap split`: write a two-stage protocol split into the store."""

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
    split_option,
    store,
    stored_dataset,
)
from clipclap_cli.cli.console import out, table


def install(app, pm) -> None:
    @app.command("split")
    def split(
        dataset: StoredDatasetArg = None,
        split_name: split_option("Split name: cls_split, main_split, or a new name for a drawn split") = None,
        from_dir: Annotated[Path | None, typer.Option("--from", metavar="DIR", help="A class-split folder (default: the one imported with the features)")] = None,
        seen: Annotated[int | None, typer.Option("--seen", metavar="N", help="Draw a split: number of stage-2 seen classes")] = None,
        unseen: Annotated[int | None, typer.Option("--unseen", metavar="N", help="Draw a split: number of stage-2 unseen (test) classes")] = None,
        val_unseen: Annotated[int | None, typer.Option("--val-unseen", metavar="N", help="Draw a split: stage-1 val-unseen classes (default seen/3)")] = None,
        seed: Annotated[int, typer.Option("--seed", metavar="N", min=0, help="Draw a split: random seed")] = 0,
        store_path: StoreOpt = DEFAULT_STORE,
        wait: WaitOpt = None,
        datasets_file: DatasetsOpt = None,
    ):
        """Write a protocol split. From class-split files, or drawn anew with --seen/--unseen."""
        from clipclap_cli.data.ingest import split_drawn, split_from_folder
        from clipclap_cli.errors import SplitError

        fs = store(store_path, wait)
        dataset = stored_dataset(fs, dataset)
        if (seen is None) != (unseen is None):
            raise SplitError("drawing a split needs both --seen and --unseen")
        if seen is not None:
            if from_dir is not None:
                raise SplitError("--from and --seen/--unseen exclude each other")
            name = split_name or f"drawn_seed{seed}"
            counts = split_drawn(fs, dataset, name, seen, unseen, seed, val_unseen)
        else:
            name = split_name or _default_split(pm, datasets_file, dataset)
            counts = split_from_folder(fs, dataset, name, from_dir)
        out.print(table(f"{dataset}: split {name}", ["partition", "videos"], [[k, v] for k, v in counts.items()]))


def _default_split(pm, datasets_file, dataset: str) -> str:
    cat = catalog(pm, datasets_file)
    return cat.get(dataset).split if dataset in cat.names() else "cls_split"
