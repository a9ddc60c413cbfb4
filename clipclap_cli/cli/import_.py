"""`clipclap import`: read the released CLIP/CLAP feature tree into the store."""

from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import (
    DEFAULT_STORE,
    DatasetArg,
    DatasetsOpt,
    ReplaceOpt,
    StoreOpt,
    WaitOpt,
    catalog,
    report_ingest,
    store,
)
from clipclap_cli.cli.console import err


def install(app, pm) -> None:
    @app.command("import")
    def import_(
        dataset: DatasetArg,
        root: Annotated[Path, typer.Argument(metavar="ROOT", help="Dataset root of the released features (holds class-split/ and features/)")],
        store_path: StoreOpt = DEFAULT_STORE,
        wait: WaitOpt = None,
        datasets_file: DatasetsOpt = None,
        replace: ReplaceOpt = False,
    ):
        """Import released features (data.zip layout). Writes the dataset's default split too."""
        from clipclap_cli.data.ingest import import_dataset

        with err.status(f"importing {dataset} from {root}"):
            result = import_dataset(store(store_path, wait), catalog(pm, datasets_file), dataset, root, replace)
        report_ingest(result, store_path)
