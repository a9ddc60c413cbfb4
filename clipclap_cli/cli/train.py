"""`clipclap train`: the two-stage protocol for one or more fusion heads, resumable by epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import (
    DEFAULT_STORE,
    DatasetsOpt,
    DeviceOpt,
    ParamOpt,
    SeedOpt,
    StoredDatasetArg,
    StoreOpt,
    catalog,
    split_option,
    store,
    stored_dataset,
)
from clipclap_cli.cli.console import err, test_figures

RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="Where run folders are created")]
STAGES = {"1": (1,), "2": (2,), "all": (1, 2)}


def install(app, pm) -> None:
    @app.command("train")
    def train(
        dataset: StoredDatasetArg = None,
        stage: Annotated[str, typer.Option("--stage", metavar="1|2|all", help="1, 2 or all (stage 2 needs stage 1 of the same run)")] = "all",
        head: Annotated[str, typer.Option("--head", metavar="NAMES", help="Fusion head, a comma-separated list, or 'all'")] = "clipclap",
        params: ParamOpt = [],  # noqa: B006 - Typer reads the default
        seed: SeedOpt = None,
        seeds: Annotated[int, typer.Option("--seeds", metavar="N", help="Train this many runs, seeds seed, seed+1, ...")] = 1,
        epochs: Annotated[int | None, typer.Option("--epochs", metavar="N", help="Stage-1 epochs (default: the dataset's)")] = None,
        lr: Annotated[float | None, typer.Option("--lr", metavar="LR", help="Learning rate (default: the dataset's)")] = None,
        batches: Annotated[int | None, typer.Option("--batches-per-epoch", metavar="N", help="Batches per epoch (default: the head's or dataset's)")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", metavar="N", help="Samples per batch (default: the head's or dataset's)")] = None,
        split: split_option("Protocol split (default: the dataset's)") = None,
        replay: Annotated[bool, typer.Option("--replay-forward/--no-replay-forward",
                                             help="The reference's extra train-mode forward after each step")] = True,
        lr_scheduler: Annotated[bool | None, typer.Option(
            "--lr-scheduler/--no-lr-scheduler",
            help="ReduceLROnPlateau on validation HM (default: on, unless datasets.toml turns it off for the head)")] = None,
        beta_grid: Annotated[str, typer.Option("--beta-grid", metavar="START:STOP:POINTS", help="Bias grid START:STOP:POINTS (AVCA-GZSL: 0:3:16)")] = "0:5:76",
        legacy: Annotated[bool, typer.Option("--legacy-label-order",
                                             help="The reference's sorted-key label embeddings (to match old numbers)")] = False,
        device: DeviceOpt = "cpu",
        threads: Annotated[int | None, typer.Option(
            "--threads", min=1, metavar="N",
            help="CPU threads per run (default: torch's, or what the run recorded; e.g. 1 to train several runs at once)")] = None,
        jobs: Annotated[int, typer.Option(
            "--jobs", min=1, metavar="N", help="Runs trained at once in worker processes, each with a share of the CPU cores")] = 1,
        stack: Annotated[bool, typer.Option(
            "--stack/--no-stack",
            help="Train runs that differ only in the seed as one stacked model (heads that support it)")] = True,
        run_dir: Annotated[Path | None, typer.Option("--run", metavar="DIR", help="Run folder (default RUNS_DIR/DATASET/HEAD/seedN)")] = None,
        runs_dir: RunsDirOpt = Path("runs"),
        store_path: StoreOpt = None,
        datasets_file: DatasetsOpt = None,
    ):
        """Train fusion heads with the two-stage protocol. Rerun the same command to resume."""
        from clipclap_cli.errors import ClipclapError
        from clipclap_cli.plugins.registry import list_heads
        from clipclap_cli.protocol import DEFAULT_BETA_GRID, check_options
        from clipclap_cli.runs.folder import check_run_folder, check_runs_dir
        from clipclap_cli.runs.plan import RunRequest, parse_grid, plan_runs
        from clipclap_cli.train.distributed import torchrun_ranks

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
        if run_dir is not None:
            check_run_folder(run_dir)
        else:
            check_runs_dir(runs_dir)
        settings_given = (head != "clipclap" or params or seed is not None or split is not None or legacy
                          or any(v is not None for v in (epochs, lr, batches, batch_size, lr_scheduler))
                          or beta_grid != "0:5:76" or not replay)
        if run_dir is not None and (run_dir / "config.json").exists() and not settings_given:
            _continue_run(run_dir, dataset, store_path, STAGES[stage], pm, threads)
            return
        fs = store(store_path or DEFAULT_STORE)
        entry = catalog(pm, datasets_file).get(stored_dataset(fs, dataset))
        ranks = torchrun_ranks()  # under torchrun: this process trains its share of the runs
        if ranks is not None:
            device = ranks.device(device)
        request = RunRequest(tuple(names), tuple(params), seed, seeds, split, epochs, lr, batch_size, batches, device,
                             None if replay else False, lr_scheduler, None if grid == DEFAULT_BETA_GRID else grid, legacy)
        plan = plan_runs(fs, entry, request, runs_dir, run_dir, pm)
        if ranks is not None:
            _train_on_ranks(ranks, plan, fs, STAGES[stage], jobs, threads, pm, stack)
            return
        finished, failed = train_plan(plan, fs, STAGES[stage], jobs, threads, pm, stack)
        if 2 in STAGES[stage] and finished:  # with every run failed, the error below says so
            from clipclap_cli.cli.report import print_report

            print_report(finished)
        if failed:
            raise ClipclapError(f"{failed} of {len(plan)} runs failed (above); rerun the same command to retry them")


def train_plan(plan, fs, stages, jobs, threads, pm, stack=True) -> tuple[list[Path], int]:
    """Train the runs of `plan`, `jobs` at a time, or with `stack` runs that differ only in the
    seed as one stacked model: the folders that finished, and how many failed (a run alone
    raises its failure)."""
    from clipclap_cli.plugins.registry import get_head
    from clipclap_cli.train.stacked import stack_groups

    failed = 0
    if jobs > 1 and len(plan) > 1:
        finished, failed = train_side_by_side(plan, fs, stages, min(jobs, len(plan)), threads, pm)
        return [p for p in finished if p is not None], failed
    groups = (stack_groups(plan, {spec.head: get_head(spec.head, pm) for _, spec in plan}) if stack
              else [[i] for i in range(len(plan))])
    finished = []
    for group in groups:
        if len(group) == 1:
            finished.append(train_one(*plan[group[0]], fs, stages, pm, threads))
        else:
            done, failures = train_stacked([plan[i] for i in group], fs, stages, threads, pm)
            finished += done
            failed += failures
    return [p for p in finished if p is not None], failed


def _train_on_ranks(ranks, plan, fs, stages, jobs, threads, pm, stack=True) -> None:
    """torchrun's rank `ranks.rank` trains its share of `plan`; the ranks then gather what
    finished and what failed, rank 0 prints the table of every rank's runs, and a failure on
    any rank fails the command on every rank (torchrun reports it)."""
    from clipclap_cli.errors import ClipclapError
    from clipclap_cli.train.distributed import barrier, gather, process_group

    mine = ranks.share(plan)
    err.print(f"rank {ranks.rank} of {ranks.world}: {len(mine)} of {len(plan)} runs")
    with process_group():
        error = None
        try:
            finished, failed = train_plan(mine, fs, stages, jobs, threads, pm, stack)
        except ClipclapError as e:  # still gathered with the others, so that no rank waits forever
            finished, failed, error = [], len(mine), str(e)
        outcomes = gather(([str(p) for p in finished], failed))
        done = [Path(p) for paths, _ in outcomes for p in paths]
        if ranks.rank == 0 and 2 in stages and done:
            from clipclap_cli.cli.report import print_report

            print_report(done)
        barrier()  # no rank exits before rank 0 has printed: torchrun stops every rank when one fails
    if error is not None:
        raise ClipclapError(error)
    failed_all = sum(n for _, n in outcomes)
    if failed_all:
        raise ClipclapError(f"{failed_all} of {len(plan)} runs failed on the ranks (above); rerun the same "
                            "command to retry them")


def _continue_run(path: Path, dataset: str | None, store_path: str | None, stages, pm, threads) -> None:
    """`train --run RUN` with no settings: resume or continue the run as it was started, with its
    recorded dataset, split, head, parameters and settings, on its recorded store (unless
    --store names where the store is now). This is what the hints the tool prints run."""
    from clipclap_cli.errors import RunError
    from clipclap_cli.runs.folder import load_spec

    spec, raw = load_spec(path)
    if dataset is not None and dataset != spec.dataset:
        raise RunError(f"run {path} trains dataset {spec.dataset!r}, not {dataset!r}")
    fs = store(store_path or raw["store"])
    if not fs.location.exists():
        raise RunError(f"run {path} was trained on the store {raw['store']}, which is not there any more; "
                       "pass --store with the store's new place")
    finished = train_one(path, spec, fs, stages, pm, threads)
    if 2 in stages and finished is not None:
        from clipclap_cli.cli.report import print_report

        print_report([finished])


def train_one(path, spec, fs, stages, pm, threads=None):
    """Train one run with a progress bar; returns the run folder once it has results."""
    from rich.progress import TextColumn

    from clipclap_cli import __version__
    from clipclap_cli.cli.console import progress
    from clipclap_cli.runs.folder import load_spec
    from clipclap_cli.train.stages import Callbacks, train_run

    with progress(TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("", total=spec.train.batches_per_epoch, info="")
        state = {"stage": 1, "epochs": 0}

        def stage_start(stage, epochs_done, epochs):
            if stage == stages[0]:
                err.print(f"[bold]{spec.head}[/bold] on {spec.dataset} (seed {spec.train.seed}) -> {path}")
            state.update(stage=stage, epochs=epochs)
            if epochs_done:
                err.print(f"stage {stage}: resuming at epoch {epochs_done + 1}/{epochs}")
            bar.reset(task, description=f"stage {stage} epoch {epochs_done + 1}/{epochs}")

        def epoch_end(stage, record):
            loss = f"loss {record.losses['total']:.4f}  " if "total" in record.losses else "training-free  "
            info = f"{loss}val HM {100 * record.val['hm']:.2f}  best epoch {record.best_epoch}"
            bar.console.print(f"stage {stage} epoch {record.epoch}/{state['epochs']}: {info}")
            bar.reset(task, description=f"stage {stage} epoch {record.epoch + 1}/{state['epochs']}", info=info)

        def step(n):
            bar.update(task, completed=n)

        def stage_reused(stage, result):
            if stage == stages[0]:
                err.print(f"[bold]{spec.head}[/bold] on {spec.dataset} (seed {spec.train.seed}) -> {path}")
                made_by = load_spec(path)[1].get("clipclap_version", "?")
                if made_by != __version__:
                    err.print(f"[yellow]this run was trained by clipclap {made_by} (this is {__version__})[/yellow]")
                err.print(f"finished stages are reused as they are; remove {path} to train them again")
            best = f", best epoch {result['best_epoch']}" if stage == 1 else ""
            err.print(f"stage {stage}: already trained ({result['epochs']} epochs{best})")

        results = train_run(path, spec, fs, stages, Callbacks(stage_start, step, epoch_end, stage_reused), pm, threads)
    if results is not None:
        err.print(f"test: {test_figures(results)} -> {path / 'results.json'}")
        return path
    return None


def train_stacked(runs, fs, stages, threads, pm):
    """Train `runs` (specs that differ only in the seed) as one stacked model, one progress bar
    for the stack; returns the folders of the runs with results and how many runs failed."""
    from rich.markup import escape
    from rich.progress import TextColumn

    from clipclap_cli.cli.console import progress
    from clipclap_cli.train.stacked import train_stack
    from clipclap_cli.train.stages import Callbacks

    spec = runs[0][1]
    seeds = ", ".join(str(s.train.seed) for _, s in runs)
    err.print(f"[bold]{spec.head}[/bold] on {spec.dataset}: {len(runs)} runs (seeds {seeds}) trained as one stack")
    labels = [f"seed {s.train.seed}" for _, s in runs]
    with progress(TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("", total=spec.train.batches_per_epoch, info="")
        epochs = [0] * len(runs)

        def callbacks(i):
            label, path = labels[i], runs[i][0]

            def stage_start(stage, epochs_done, total):
                epochs[i] = total
                if stage == stages[0]:
                    err.print(f"{label} -> {path}")
                if epochs_done:
                    err.print(f"{label}: stage {stage}: resuming at epoch {epochs_done + 1}/{total}")
                bar.reset(task, description=f"stage {stage}")

            def epoch_end(stage, record):
                info = (f"loss {record.losses['total']:.4f}  val HM {100 * record.val['hm']:.2f}  "
                        f"best epoch {record.best_epoch}")
                bar.console.print(f"{label}: stage {stage} epoch {record.epoch}/{epochs[i]}: {info}")
                bar.reset(task, description=f"stage {stage} epoch {record.epoch + 1}", info="")

            def stage_reused(stage, result):
                if stage == stages[0]:
                    err.print(f"{label} -> {path}: finished stages are reused as they are; remove it to train "
                              "them again")
                best = f", best epoch {result['best_epoch']}" if stage == 1 else ""
                err.print(f"{label}: stage {stage}: already trained ({result['epochs']} epochs{best})")

            return Callbacks(stage_start, lambda n: None, epoch_end, stage_reused)

        outcomes = train_stack(runs, fs, stages, [callbacks(i) for i in range(len(runs))],
                               lambda n: bar.update(task, completed=n), pm, threads)
    finished, failed = [], 0
    for (path, _), label, outcome in zip(runs, labels, outcomes, strict=True):
        if isinstance(outcome, Exception):
            err.print(f"[red]Error:[/red] {escape(label)}: {escape(str(outcome))}")
            failed += 1
        elif outcome is not None:
            err.print(f"{label}: test: {test_figures(outcome)} -> {path / 'results.json'}")
            finished.append(path)
    return finished, failed


def train_side_by_side(plan, fs, stages, jobs, threads, pm):
    """Train the runs of `plan` `jobs` at a time in worker processes, one progress bar per run;
    returns the folders of the runs with results and how many runs failed."""
    from rich.markup import escape
    from rich.progress import TextColumn

    from clipclap_cli.cli.console import progress
    from clipclap_cli.plugins.manager import portable_plugins
    from clipclap_cli.train.jobs import train_in_workers

    plugins = portable_plugins(pm)  # a plugin the workers cannot get fails here, before any output
    err.print(f"training {len(plan)} runs, {jobs} at a time in worker processes")
    labels = [f"{spec.head} seed {spec.train.seed}" for _, spec in plan]
    with progress(TextColumn("{task.fields[info]}")) as bar:
        tasks = [bar.add_task(label, total=None, info="waiting") for label in labels]
        epochs = [0] * len(plan)

        def on_event(event):
            task, label = tasks[event.run], labels[event.run]
            if event.kind == "start":
                epochs[event.run] = event.epochs
                if event.stage == stages[0]:
                    err.print(f"[bold]{label}[/bold] -> {plan[event.run][0]}")
                if event.epoch:  # the epochs done
                    err.print(f"{label}: stage {event.stage}: resuming at epoch {event.epoch + 1}/{event.epochs}")
                bar.update(task, total=event.epochs, completed=event.epoch, info=f"stage {event.stage}")
            elif event.kind == "epoch":
                r = event.record
                info = f"stage {event.stage}  val HM {100 * r['val']['hm']:.2f}  best epoch {r['best_epoch']}"
                bar.console.print(f"{label}: stage {event.stage} epoch {event.epoch}/{epochs[event.run]}: "
                                  f"loss {r['losses']['total']:.4f}  val HM {100 * r['val']['hm']:.2f}")
                bar.update(task, completed=event.epoch, info=info)
            elif event.kind == "reused":
                err.print(f"{label}: stage {event.stage}: already trained")
                bar.update(task, info=f"stage {event.stage} already trained")

        outcomes = train_in_workers(plan, fs.location.recorded(), stages, jobs, threads, on_event, plugins)
    finished, failed = [], 0
    for (path, _), label, outcome in zip(plan, labels, outcomes, strict=True):
        if outcome.error is not None:
            err.print(f"[red]Error:[/red] {escape(label)}: {escape(outcome.error)}")
            failed += 1
        elif outcome.results is not None:
            err.print(f"{label}: test: {test_figures(outcome.results)} -> {path / 'results.json'}")
            finished.append(path)
    return finished, failed
