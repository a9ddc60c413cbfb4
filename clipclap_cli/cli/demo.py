"""`clipclap demo`: generate the built-in synthetic benchmark and run the pipeline on it."""

from __future__ import annotations

from typing import Annotated

import typer

from ..console import err
from ._options import DEFAULT_STORE, DatasetsOpt, StoreOpt, catalog, store


def install(app, pm) -> None:
    @app.command("demo")
    def demo(
        seed: Annotated[int, typer.Option("--seed", help="Seed of the generated benchmark")] = 0,
        dataset: Annotated[str, typer.Option("--dataset", help="Which generated dataset entry to use")] = "demo",
        store_path: StoreOpt = DEFAULT_STORE,
        datasets_file: DatasetsOpt = None,
    ):
        """Generate the demo benchmark (UCF-shaped, synthetic) into the store and show it."""
        from ..ingest import generate_dataset
        from .inspect import _show

        with err.status(f"generating {dataset} (seed {seed})"):
            result = generate_dataset(store(store_path), catalog(pm, datasets_file), dataset, seed)
        err.print(f"{dataset}: {result.videos} videos, {result.classes} classes"
                  + (" (unchanged)" if result.unchanged else f" -> {store_path}"))
        _show(store(store_path), dataset)
