"""`clipclap demo`: generate the built-in synthetic benchmark and run the whole pipeline on it."""

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import (
    DEFAULT_STORE,
    DatasetsOpt,
    DeviceOpt,
    ReplaceOpt,
    StoreOpt,
    WaitOpt,
    catalog,
    checked_name,
    report_ingest,
    store,
)
from clipclap_cli.cli.console import err


def install(app, pm) -> None:
    @app.command("demo")
    def demo(
        seed: Annotated[int, typer.Option("--seed", metavar="N", min=0, help="Seed of the generated benchmark")] = 0,
        dataset: Annotated[str, typer.Option("--dataset", metavar="NAME", callback=checked_name("dataset"), help="Which generated dataset entry to use")] = "demo",
        train: Annotated[bool, typer.Option("--train/--no-train", help="Train, evaluate and report after generating")] = True,
        seeds: Annotated[int, typer.Option("--seeds", metavar="K", min=1, help="Seeds of each head (error bars and paired tests need two or more)")] = 3,
        epochs: Annotated[int | None, typer.Option("--epochs", metavar="N", help="Stage-1 epochs (default: the dataset's, 10)")] = None,
        batches: Annotated[int | None, typer.Option("--batches-per-epoch", metavar="N", help="Batches per epoch (default: the dataset's, 200)")] = None,
        device: DeviceOpt = "cpu",
        runs_dir: Annotated[Path | None, typer.Option("--runs-dir", metavar="DIR", help="Run folders (default: runs/ next to the store, or here for a URL)")] = None,
        store_path: StoreOpt = DEFAULT_STORE,
        wait: WaitOpt = None,
        datasets_file: DatasetsOpt = None,
        replace: ReplaceOpt = False,
    ):
        """Run the whole pipeline on the demo benchmark. Generates it (UCF-shaped, synthetic), trains
        ClipClap and the training-free zeroshot floor for --seeds seeds, evaluates, prints the
        table with error bars and the paired tests of zeroshot against ClipClap."""
        from clipclap_cli.cli.inspect import _show
        from clipclap_cli.cli.progress import train_drawn
        from clipclap_cli.cli.report import print_report
        from clipclap_cli.data.ingest import generate_dataset
        from clipclap_cli.protocol import check_options
        from clipclap_cli.runs.folder import check_runs_dir
        from clipclap_cli.runs.plan import RunRequest
        from clipclap_cli.train.launchers import InProcess
        from clipclap_cli.train.scheduler import train_request

        check_options({"seed": seed, "seeds": seeds, "epochs": epochs, "batches_per_epoch": batches})  # before any work
        cat = catalog(pm, datasets_file)
        fs = store(store_path, wait)
        base = fs.path.resolve().parent if fs.path is not None else Path.cwd()  # beside the store, if a folder
        runs_dir = runs_dir or base / "runs"
        if train:  # runs are never written into a store: refused before the data is generated
            check_runs_dir(runs_dir, fs.path)
        with err.status(f"generating {dataset} (seed {seed})"):
            result = generate_dataset(fs, cat, dataset, seed, replace)
        report_ingest(result, store_path)
        _show(dataset, fs.describe(dataset))
        if not train:
            return
        request = RunRequest(heads=("clipclap", "zeroshot"), seeds=seeds, epochs=epochs, batches_per_epoch=batches,
                             device=device)
        # the seeds of clipclap train as one stack (docs/train.md "Stacked runs"), zeroshot's one by one
        outcome = train_drawn((1, 2), lambda emit: train_request(fs, cat.get(dataset), request, runs_dir, None, (1, 2),
                                                                 lambda runs: InProcess(), pm, emit=emit))
        outcome.check()
        # the plots need the plots extra; without it the demo still ends with its table
        plots = base / "plots" if importlib.util.find_spec("matplotlib") is not None else None
        print_report(list(outcome.finished), "markdown", True, plots)
        err.print(f"run folders: {runs_dir}\n" + (f"plots: {plots}" if plots else
                                                  "plots: none (pip install 'clipclap[plots]' for them)"))
