"""`clipclap extract`: CLIP/CLAP features from videos into the store; resumable and shardable."""

from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli._options import (
    DEFAULT_STORE,
    ArrayParallelismOpt,
    CpusOpt,
    DatasetArg,
    DatasetsOpt,
    DeviceOpt,
    GpusOpt,
    JsonOpt,
    MemGbOpt,
    PartitionOpt,
    ReplaceOpt,
    SbatchOpt,
    StoreOpt,
    TimeOpt,
    WaitOpt,
    catalog,
    cluster_settings,
    launcher_option,
    params_by_encoder,
    report_ingest,
    store,
    whole_in,
)
from clipclap_cli.cli.console import err, out, table

EncoderParamOpt = Annotated[list[str], typer.Option(
    "--encoder-param", "-e", metavar="ENCODER:KEY=VALUE", help="ENCODER:KEY=VALUE, e.g. clip:checkpoint=PATH or clap:size=tiny; repeatable")]


def install(app, pm) -> None:
    @app.command("extract")
    def extract(
        dataset: DatasetArg,
        videos: Annotated[Path | None, typer.Option("--videos", metavar="DIR", help="Folder of the dataset's videos (default: the dataset's `videos` setting)")] = None,
        split_dir: Annotated[Path | None, typer.Option("--split-dir", metavar="DIR", help="A class-split folder (all_class.txt, the names csv, cls_split/*.csv): videos, classes and split from its files (default: the dataset's `split_dir` setting, if its format has one)")] = None,
        video_encoder: Annotated[str, typer.Option("--video-encoder", metavar="NAME", help="Encoder of the video features")] = "clip",
        audio_encoder: Annotated[str, typer.Option("--audio-encoder", metavar="NAME", help="Encoder of the audio features")] = "clap",
        params: EncoderParamOpt = [],  # noqa: B006 - Typer reads the default
        frames: Annotated[int, typer.Option("--frames", metavar="N", callback=whole_in(1, 1000), help="Frames per video: 1 = the middle frame")] = 1,
        frame_recipe: Annotated[str | None, typer.Option("--frame-recipe", metavar="NAME", help="How each video's frame is taken: clean, or a released feature set's recipe (default: the dataset's, else clean)")] = None,
        batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", callback=whole_in(1, 1_000_000), help="Videos per encoder batch")] = 32,
        workers: Annotated[int, typer.Option("--workers", metavar="N", callback=whole_in(0, 4096), help="Decoding processes (0: decode in this process)")] = 2,
        shard: Annotated[str | None, typer.Option("--shard", metavar="I/N", help="i/n: this process's share (default: RANK/WORLD_SIZE)")] = None,
        chunk: Annotated[int, typer.Option("--chunk", metavar="ROWS", callback=whole_in(1, 10_000_000), help="Rows per store chunk (a shard owns whole chunks)")] = 64,
        retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try the videos that failed before again")] = False,
        failures_csv: Annotated[Path | None, typer.Option("--failures-csv", metavar="FILE", help="Write every video that failed, with the reason, to this csv (id,reason)")] = None,
        dtype: Annotated[str, typer.Option("--dtype", metavar="fp32|bf16|fp16", help="fp32, bf16 or fp16 inference")] = "fp32",
        device: DeviceOpt = "cpu",
        store_path: StoreOpt = DEFAULT_STORE,
        wait: WaitOpt = None,
        datasets_file: DatasetsOpt = None,
        replace: ReplaceOpt = False,
        launcher: launcher_option("Extract here, or each of --shards as a task of a SLURM job array: clipclap docs cluster") = "local",
        shards: Annotated[int | None, typer.Option("--shards", metavar="N", help="With --launcher slurm: the shards, one array task each (default 1)")] = None,
        partition: PartitionOpt = None,
        time_limit: TimeOpt = None,
        gpus: GpusOpt = None,
        cpus: CpusOpt = None,
        mem_gb: MemGbOpt = None,
        array_parallelism: ArrayParallelismOpt = None,
        sbatch: SbatchOpt = [],  # noqa: B006 - Typer reads the default
        no_wait: Annotated[bool, typer.Option("--no-wait", help="With --launcher slurm: submit the tasks and return (the same command again follows them)")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the videos to do, the shards and an estimated time; write nothing")] = False,
        as_json: JsonOpt = False,
    ):
        """Extract video (CLIP) and audio (CLAP) features. Rerun the same command to resume."""
        from rich.progress import TextColumn

        from clipclap_cli.cli.console import progress
        from clipclap_cli.data.ingest import store_bundle
        from clipclap_cli.devices import check_device
        from clipclap_cli.errors import ClipclapError, SplitError
        from clipclap_cli.extract.extraction import Extraction, Shard
        from clipclap_cli.extras import need
        from clipclap_cli.frame_recipes import get_recipe
        from clipclap_cli.plugins.contracts import check_description, check_samples

        check_device(device)  # before the working group is created
        cluster = _cluster(launcher, shard, datasets_file, no_wait, shards, partition=partition, time=time_limit,
                           gpus=gpus, cpus=cpus, mem_gb=mem_gb, array_parallelism=array_parallelism,
                           sbatch=tuple(sbatch))
        need("av", "extract", "clipclap extract (decoding videos)")  # else every video would fail alike
        cat = catalog(pm, datasets_file)
        entry = cat.get(dataset)
        adapter = cat.adapter(dataset)
        options = {} if split_dir is None else {"split_dir": split_dir}
        videos = videos or _videos_folder(entry, adapter)
        samples = check_samples(adapter, adapter.samples(videos, **options))
        description = check_description(adapter, samples, adapter.describe_samples(samples, **options))
        by_encoder = params_by_encoder(pm, params)
        encoders = {"video": _encoder(pm, video_encoder, "video", by_encoder.get(video_encoder, []), device, dtype),
                    "audio": _encoder(pm, audio_encoder, "audio", by_encoder.get(audio_encoder, []), device, dtype)}
        for modality, enc in encoders.items():
            want = getattr(entry.dims, modality)
            if enc.dim != want:
                raise ClipclapError(f"dataset {dataset!r} expects {want}-d {modality} features (dims in "
                                    f"{entry.origin}); encoder {enc.encoder_id!r} gives {enc.dim}")
            enc.check_weights()  # a missing checkpoint fails now, not after the first chunk's decoding
        part = Shard.parse(shard)
        fs = store(store_path, wait)
        recipe = get_recipe(frame_recipe or entry.frame_recipe)
        if frames > 1 and recipe.select != "middle-time":
            raise ClipclapError(f"--frames {frames} takes frames at evenly spaced times; frame recipe {recipe.name!r} "
                                "takes one frame as its script did (use --frame-recipe clean)")
        job = Extraction(fs, dataset, samples, encoders, chunk, frames, description, recipe.name)
        job.refuse_other_source(replace)
        job.reuse_stored = not replace
        if dry_run:  # the same checks as a real run, then the plan: nothing extracted or written
            from clipclap_cli.cli.dry_run import show_extract_plan

            show_extract_plan(job, part if cluster is None else Shard(0, cluster.count), workers, retry_failed,
                              as_json)
            if cluster is not None and not as_json:
                err.print(cluster.describe(job, retry_failed) + "; each task runs one shard, the last to finish writes the dataset")
            return
        if cluster is not None:  # the shards as SLURM array tasks, each this command with --shard i/N
            from clipclap_cli.cluster import check_slurm

            check_slurm(cluster.settings, "extract")
            argv = _task_argv(dataset, videos, split_dir, video_encoder, audio_encoder, params, frames, frame_recipe,
                              batch_size, workers, chunk, failures_csv, dtype, device, fs, wait, datasets_file, replace)
            if retry_failed:  # once, here: each shard resetting every failed row would undo the others' work
                job.open()
                err.print(f"retrying {job.retry_failed()} failed videos")
            cluster.run(job, argv, lambda line: err.print(line, markup=False, highlight=False))
            return
        job.open(part, on_wait=lambda: err.print(
            f"waiting for shard 0 to create the working group in {fs} (up to 10 minutes)"))
        if retry_failed:
            err.print(f"retrying {job.retry_failed()} failed videos")
        with progress(TextColumn("{task.fields[rate]}")) as bar:
            task = bar.add_task(f"extract {dataset}" + (f" shard {part.index}/{part.count}" if part.count > 1 else ""),
                                total=None, rate="")

            def on_progress(done: int, total: int) -> None:
                if not done:  # before the first chunk, whose first batch loads the encoders' models
                    bar.update(task, completed=0, total=total, rate=loading)
                    return
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.1f} videos/s")

            loading = (f"loading models ({encoders['video'].encoder_id} for video, "
                       f"{encoders['audio'].encoder_id} for audio, on {device}) with the first videos")

            counts = job.run(part, workers, batch_size, on_progress)
        err.print(f"{counts['videos']} videos processed, {counts['failed']} failed")
        if not job.finished():
            err.print("other shards still have videos to do; the last one to finish writes the dataset")
            return
        with job.writer_lock() as mine:
            if not mine:
                err.print("another process is writing the finished dataset")
                return
            bundle, failures = job.bundle(f"extract({videos})")
            try:
                result = store_bundle(fs, entry, bundle, replace=replace)
            except SplitError as e:  # the features are still worth keeping; the split can come later
                result = store_bundle(fs, entry, bundle, write_split=False, replace=replace)
                err.print(f"[yellow]no split written:[/yellow] {e} (see `clipclap split {dataset}`)")
        if fs.path is not None:  # the dataset is written: the working folder goes (an object store's: at the next run)
            job.remove()
        report_ingest(result, store_path)
        if failures_csv is not None:
            replaced = Path(failures_csv).exists()
            _write_failures(failures_csv, failures)
            err.print(f"{len(failures)} failed videos listed in {failures_csv}"
                      + (" (it replaced the file that was there)" if replaced else ""))
        if failures:
            out.print(table(f"{len(failures)} videos could not be read (rerun with --retry-failed)",
                            ["video", "reason"], sorted(failures.items())))


def _cluster(launcher: str, shard: str | None, datasets_file: Path | None, no_wait: bool, shards: int | None,
             **given):
    """`--launcher slurm`'s launcher for `--shards` (None: `local`, extracted here); the SLURM
    options, --shards and --no-wait without it are refused, as is --shard (or torchrun) with it."""
    import os

    from clipclap_cli.errors import ClipclapError

    settings = cluster_settings(launcher, datasets_file, {"--shards": shards is not None, "--no-wait": no_wait},
                                **given)
    if settings is None:
        return None
    if shards is not None and shards < 1:
        raise ClipclapError(f"--shards {shards}: expected a whole number of 1 or more")
    if shard is not None or os.environ.get("WORLD_SIZE") is not None:
        raise ClipclapError("--launcher slurm makes the shards itself (--shards N): start it once, without --shard "
                            "and not under torchrun")
    from clipclap_cli.extract.slurm import SlurmExtraction

    return SlurmExtraction(settings, shards or 1, wait=not no_wait)


def _task_argv(dataset, videos, split_dir, video_encoder, audio_encoder, params, frames, frame_recipe, batch_size,
               workers, chunk, failures_csv, dtype, device, fs, wait, datasets_file, replace) -> list[str]:
    """This command's extraction options for an array task (paths absolute: a task may start
    elsewhere), which adds its --shard."""
    def path(option: str, value) -> list[str]:
        return [] if value is None else [option, str(Path(value).resolve())]

    return [dataset, *path("--videos", videos), *path("--split-dir", split_dir), "--video-encoder", video_encoder,
            "--audio-encoder", audio_encoder, *[a for p in params for a in ("-e", p)], "--frames", str(frames),
            *(["--frame-recipe", frame_recipe] if frame_recipe else []), "--batch-size", str(batch_size),
            "--workers", str(workers), "--chunk", str(chunk), *path("--failures-csv", failures_csv), "--dtype", dtype,
            "--device", device, "--store", fs.location.recorded(), *(["--wait", str(wait)] if wait is not None else []),
            *path("--datasets", datasets_file), *(["--replace"] if replace else [])]


def _write_failures(path: Path, failures: dict[str, str]) -> None:
    """id,reason for every video that failed (a header line even when none did), written whole."""
    import csv
    import io

    from clipclap_cli.files import write_text_atomic

    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["id", "reason"])
    writer.writerows(sorted(failures.items()))
    write_text_atomic(Path(path), text.getvalue())


def _videos_folder(entry, adapter) -> Path | None:
    """The dataset's `videos` setting, when --videos is not given (None for a format without
    videos: its `samples` says so)."""
    from clipclap_cli.api import DatasetAdapter
    from clipclap_cli.errors import ConfigError

    if entry.videos is not None:
        return entry.resolve(entry.videos)
    if type(adapter).samples is DatasetAdapter.samples:
        return None
    raise ConfigError(f"dataset {entry.name!r} names no videos folder: pass --videos DIR, or set "
                      f'videos = "DIR" under [datasets.{entry.name}] in a datasets file (--datasets)')


def _encoder(pm, name: str, modality: str, pairs: list[str], device: str, dtype: str):
    """Encoder `name` for `modality` with its -e parameters; device and dtype unless given."""
    from clipclap_cli.errors import ClipclapError
    from clipclap_cli.params import build_params, pairs_to_dict
    from clipclap_cli.plugins.registry import get_encoder

    base = get_encoder(name, pm)
    if base.modality != modality:
        raise ClipclapError(f"encoder {name!r} encodes {base.modality}, not {modality}")
    cls, values = type(base), pairs_to_dict(pairs)
    for key, value in (("device", device), ("dtype", dtype)):
        if key in cls.Params.__dataclass_fields__ and key not in values:
            values[key] = value
    return cls(build_params(cls.Params, values, where=f"encoder {name}"))
