"""`clipclap train`: the two-stage protocol for one or more fusion heads, resumable by epoch."""

from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import (
    DEFAULT_STORE,
    ArrayParallelismOpt,
    CpusOpt,
    DatasetsOpt,
    DeviceOpt,
    GpusOpt,
    JsonOpt,
    MemGbOpt,
    PartitionOpt,
    SbatchOpt,
    SeedOpt,
    StoredDatasetArg,
    StoreOpt,
    TimeOpt,
    catalog,
    cluster_settings,
    launcher_option,
    split_option,
    store,
    stored_dataset,
)

RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="Where run folders are created")]
STAGES = {"1": (1,), "2": (2,), "all": (1, 2)}


def install(app, pm) -> None:
    @app.command("train")
    def train(
        dataset: StoredDatasetArg = None,
        stage: Annotated[str, typer.Option("--stage", metavar="1|2|all", help="1, 2 or all (stage 2 needs stage 1 of the same run)")] = "all",
        head: Annotated[str, typer.Option("--head", metavar="NAMES", help="Fusion head, a comma-separated list, or 'all'")] = "clipclap",
        params: Annotated[list[str], typer.Option("--param", "-p", metavar="KEY=VALUE", help="Head parameter or training setting; KEY=V1,V2 sweeps; repeatable")] = [],  # noqa: B006 - Typer reads the default
        seed: SeedOpt = None,
        seeds: Annotated[int, typer.Option("--seeds", metavar="N", help="Train this many runs, seeds seed, seed+1, ...")] = 1,
        epochs: Annotated[int | None, typer.Option("--epochs", metavar="N", help="Stage-1 epochs (default: the dataset's)")] = None,
        lr: Annotated[float | None, typer.Option("--lr", metavar="LR", help="Learning rate (default: the dataset's)")] = None,
        batches: Annotated[int | None, typer.Option("--batches-per-epoch", metavar="N", help="Batches per epoch (default: the head's or dataset's)")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", metavar="N", help="Samples per batch (default: the head's or dataset's)")] = None,
        split: split_option("Protocol split (default: the dataset's)") = None,
        replay: Annotated[bool, typer.Option("--replay-forward/--no-replay-forward", help="The reference's extra train-mode forward after each step")] = True,
        lr_scheduler: Annotated[bool | None, typer.Option("--lr-scheduler/--no-lr-scheduler", help="ReduceLROnPlateau on validation HM (default: on, unless datasets.toml turns it off for the head)")] = None,
        beta_grid: Annotated[str, typer.Option("--beta-grid", metavar="START:STOP:POINTS", help="Bias grid START:STOP:POINTS (AVCA-GZSL: 0:3:16)")] = "0:5:76",
        legacy: Annotated[bool, typer.Option("--legacy-label-order", help="The reference's sorted-key label embeddings (to match old numbers)")] = False,
        device: DeviceOpt = "cpu",
        threads: Annotated[int | None, typer.Option("--threads", min=1, metavar="N", help="CPU threads per run (default: torch's, or what the run recorded; e.g. 1 to train several runs at once)")] = None,
        jobs: Annotated[int, typer.Option("--jobs", min=1, metavar="N", help="Runs trained at once in worker processes, each with a share of the CPU cores")] = 1,
        stack: Annotated[bool, typer.Option("--stack/--no-stack", help="Train runs that differ only in the seed as one stacked model (heads that support it)")] = True,
        launcher: launcher_option("Train here, or as the tasks of a SLURM job array: clipclap docs cluster") = "local",
        partition: PartitionOpt = None,
        time_limit: TimeOpt = None,
        gpus: GpusOpt = None,
        cpus: CpusOpt = None,
        mem_gb: MemGbOpt = None,
        array_parallelism: ArrayParallelismOpt = None,
        sbatch: SbatchOpt = [],  # noqa: B006 - Typer reads the default
        wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the SLURM tasks until they end, or submit and return")] = True,
        run_dir: Annotated[Path | None, typer.Option("--run", metavar="DIR", help="Run folder (default RUNS_DIR/DATASET/HEAD/seedN)")] = None,
        runs_dir: RunsDirOpt = Path("runs"),
        store_path: StoreOpt = None,
        datasets_file: DatasetsOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the runs, their state and an estimated time; train nothing")] = False,
        as_json: JsonOpt = False,
    ):
        """Train fusion heads with the two-stage protocol. Rerun the same command to resume."""
        from clipclap_cli.errors import ClipclapError
        from clipclap_cli.plugins.registry import list_heads
        from clipclap_cli.protocol import DEFAULT_BETA_GRID, check_options
        from clipclap_cli.runs.finding import has_config
        from clipclap_cli.runs.folder import check_run_folder, check_runs_dir
        from clipclap_cli.runs.plan import RunRequest, parse_grid
        from clipclap_cli.train.distributed import torchrun_ranks
        from clipclap_cli.train.launchers import launcher_for
        from clipclap_cli.train.scheduler import train_request

        if stage not in STAGES:
            raise ClipclapError(f"--stage must be 1, 2 or all, not {stage!r}")
        check_options({"epochs": epochs, "batches_per_epoch": batches, "batch_size": batch_size, "lr": lr,
                       "seed": seed, "seeds": seeds, "threads": threads, "jobs": jobs})  # before any work
        grid = parse_grid(beta_grid)
        heads = list_heads(pm)
        names = heads.names() if head == "all" else [h.strip() for h in head.split(",") if h.strip()]
        for name in names:
            heads.get(name)  # unknown names fail before anything runs
        if run_dir is not None and (len(names) > 1 or seeds > 1):
            raise ClipclapError("--run names one run; use --runs-dir with several heads or seeds")
        # runs write only into runs: a folder clipclap made, or a new or empty one, outside any store
        check_run_folder(run_dir) if run_dir is not None else check_runs_dir(runs_dir)
        cluster = _cluster(launcher, runs_dir if run_dir is None else run_dir.parent, wait, stack, jobs, datasets_file,
                           partition=partition, time=time_limit, gpus=gpus, cpus=cpus, mem_gb=mem_gb,
                           array_parallelism=array_parallelism, sbatch=tuple(sbatch))
        settings_given = (head != "clipclap" or params or seed is not None or split is not None or legacy
                          or any(v is not None for v in (epochs, lr, batches, batch_size, lr_scheduler))
                          or beta_grid != "0:5:76" or not replay)
        if run_dir is not None and has_config(run_dir) and not settings_given:
            _continue_run(run_dir, dataset, store_path, STAGES[stage], pm, threads, dry_run, as_json, cluster)
            return
        fs = store(store_path or DEFAULT_STORE)
        entry = catalog(pm, datasets_file).get(stored_dataset(fs, dataset))
        ranks = torchrun_ranks()  # under torchrun: this process trains its share of the runs
        device = ranks.device(device) if ranks is not None else device
        request = RunRequest(tuple(names), tuple(params), seed, seeds, split, epochs, lr, batch_size, batches, device,
                             None if replay else False, lr_scheduler, None if grid == DEFAULT_BETA_GRID else grid, legacy)
        launch = lambda runs: launcher_for(jobs, stack, ranks, runs, cluster)  # noqa: E731 - the dry run asks it too
        if dry_run:  # the same checks as a real run, then the plan: nothing trained or written
            from clipclap_cli.cli.dry_run import show_train_plan
            from clipclap_cli.train.scheduler import planned

            work = planned(fs, entry, request, runs_dir, run_dir, STAGES[stage], pm, threads)
            show_train_plan(work, launch(len(work.plan)), runs_dir, as_json)
            return
        _train(STAGES[stage], lambda emit, report: train_request(
            fs, entry, request, runs_dir, run_dir, STAGES[stage], launch, pm, threads, emit, report))

        if cluster is not None and not wait:
            from clipclap_cli.cli.console import err

            err.print("submitted; the same command again follows the tasks, reports the finished runs and "
                      "resubmits the others")


def _cluster(launcher: str, runs_dir: Path, wait: bool, stack: bool, jobs: int, datasets_file: Path | None,
             **given):
    """The launcher `--launcher` names (None: `local`, the runs trained here), with its settings;
    the SLURM options without `--launcher slurm`, or under torchrun, are refused, and so is
    `--jobs` with it (a task per run: the scheduler puts them side by side)."""
    from clipclap_cli.errors import ClipclapError
    from clipclap_cli.train.distributed import torchrun_ranks

    settings = cluster_settings(launcher, datasets_file, {"--no-wait": not wait}, **given)
    if settings is None:
        return None
    if torchrun_ranks() is not None:
        raise ClipclapError("--launcher slurm submits the runs to SLURM: start it once, not under torchrun")
    if jobs > 1:
        raise ClipclapError(f"--jobs {jobs} trains runs side by side in this process's workers; under --launcher slurm "
                            "each run is a task of its own (--array-parallelism caps how many run at once)")
    from clipclap_cli.train.slurm import Slurm

    return Slurm(settings, runs_dir, wait, stack)


def _train(stages, train) -> None:
    """`train(emit, report)`, drawn; with stage 2, the table of the runs that finished; then what failed."""
    from clipclap_cli.cli.progress import train_drawn
    from clipclap_cli.cli.report import print_report

    report = (lambda finished: print_report(list(finished))) if 2 in stages else None
    train_drawn(stages, lambda emit: train(emit, report)).check()


def _continue_run(path: Path, dataset: str | None, store_path: str | None, stages, pm, threads,
                  dry_run: bool = False, as_json: bool = False, cluster=None) -> None:
    """`train --run RUN` with no settings: resume or continue the run as it was started, with its
    recorded dataset, split, head, parameters and settings, on its recorded store (unless
    --store names where the store is now). This is what the hints the tool prints run."""
    from clipclap_cli.errors import RunError
    from clipclap_cli.runs.folder import load_spec
    from clipclap_cli.train.launchers import InProcess
    from clipclap_cli.train.scheduler import schedule

    spec, raw = load_spec(path)
    if dataset is not None and dataset != spec.dataset:
        raise RunError(f"run {path} trains dataset {spec.dataset!r}, not {dataset!r}")
    fs = store(store_path or raw["store"])
    if not fs.location.exists():
        raise RunError(f"run {path} was trained on the store {raw['store']}, which is not there any more; "
                       "pass --store with the store's new place")
    if dry_run:
        from clipclap_cli.cli.dry_run import show_train_plan
        from clipclap_cli.train.scheduler import Work

        show_train_plan(Work([(path, spec)], fs, stages, pm, threads), cluster or InProcess(), path.parent,
                        as_json)
        return
    _train(stages, lambda emit, report: schedule([(path, spec)], fs, stages, cluster or InProcess(), pm, threads, emit,
                                                          report))
