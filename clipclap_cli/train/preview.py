"""`train --dry-run`: what a train command would do, read from the run folders and timed, with
nothing written (no folder, no store write, no checkpoint).

Each run of the plan is done, partly done (its stages' result.json and metrics.jsonl lines say
how far) or pending, and gets an estimate: its epochs still to train times the seconds an epoch
takes. Those come from earlier runs of the same head, dataset, batch size and batches per epoch
under the runs folder (the time from a run's marker file to its last result, over its epochs:
file times only, so the run format is unchanged), else from a short measured step here: two tiny
epochs of the head (1 and 3 batches, validation included) on the planned data, kept in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from clipclap_cli.protocol import run_name_parts
from clipclap_cli.runs.config import read_json
from clipclap_cli.runs.files import CONFIG, METRICS, RESULTS, RUN_MARKER, STAGE_RESULT, stage_file
from clipclap_cli.runs.spec import RunSpec
from clipclap_cli.train.scheduler import Launcher, Work


@dataclass(frozen=True)
class RunPreview:
    """One run of the plan as it stands: `state` is done, partly done or pending; `progress`
    says how far (`stage 1 done, stage 2 at epoch 2/5`); `epochs_left` of the stages asked for."""

    folder: Path
    head: str
    seed: int
    departs: tuple[str, ...]
    state: str
    progress: str
    epochs_left: int
    seconds: float


@dataclass(frozen=True)
class PlanPreview:
    """The plan of a train command, its launcher (`where`, `tasks`) and its estimated time."""

    runs: list[RunPreview]
    where: str
    tasks: int
    seconds: float
    estimated_from: str

    def as_json(self) -> dict:
        return {"launcher": self.where, "tasks": self.tasks, "estimated_seconds": round(self.seconds, 1),
                "estimated_from": self.estimated_from,
                "runs": [dataclasses.asdict(r) | {"folder": str(r.folder), "departs": list(r.departs),
                                                   "seconds": round(r.seconds, 1)} for r in self.runs]}


def preview(work: Work, launcher: Launcher, runs_dir: Path) -> PlanPreview:
    """The dry run of `work` (`scheduler.planned`) as `launcher` would train it."""
    rates: dict[tuple, tuple[float, str]] = {}
    runs = []
    for path, spec in work.plan:
        state, progress, left = run_state(path, spec, work.stages, training_free(spec, work.pm))
        key = _shape(spec)
        if left and key not in rates:
            recorded = recorded_epoch_seconds(runs_dir, spec)
            rates[key] = ((recorded, "earlier runs") if recorded
                          else (measured_epoch_seconds(work, spec), "a measured step"))
        seconds = left * rates[key][0] if left else 0.0
        runs.append(RunPreview(path, spec.head, spec.train.seed, tuple(run_name_parts(spec.as_dict())), state,
                               progress, left, seconds))
    where, tasks, at_once = describe_launcher(launcher, work)
    sources = sorted({how for _, how in rates.values()})
    return PlanPreview(runs, where, tasks, sum(r.seconds for r in runs) / at_once, " and ".join(sources) or "-")


def run_state(path: Path, spec: RunSpec, stages: tuple[int, ...], free: bool = False) -> tuple[str, str, int]:
    """(done | partly done | pending, how far, epochs left) of the run in `path` for `stages`
    (`free`: a training-free head). Stage 2 trains as many epochs as stage 1 chose (its best
    epoch); before stage 1 ends, at most as many."""
    if not (path / CONFIG).is_file():
        first = 1 if free else spec.train.epochs
        return "pending", "not started", first * len(stages)
    parts, left, started = [], 0, False
    best = None
    for stage in (1, 2):
        result = _json(stage_file(path, stage, STAGE_RESULT))
        lines = _lines(stage_file(path, stage, METRICS))
        total = 1 if free else spec.train.epochs if stage == 1 else best or spec.train.epochs
        if stage == 1 and result is not None:
            best = result.get("best_epoch")
        started = started or lines > 0 or result is not None
        if stage not in stages:
            continue
        if result is not None:
            parts.append(f"stage {stage} done")
        else:
            parts.append(f"stage {stage} at epoch {lines}/{total}")
            left += total - lines
    finished = left == 0 and (2 not in stages or (path / RESULTS).is_file())
    state = "done" if finished else "partly done" if started else "pending"
    return state, ", ".join(parts), left


def training_free(spec: RunSpec, pm=None) -> bool:
    """A head that trains nothing has one epoch per stage (its validation pass)."""
    from clipclap_cli.plugins.registry import get_head

    return bool(get_head(spec.head, pm).training_free)


def _shape(spec: RunSpec) -> tuple:
    t = spec.train
    return spec.head, spec.dataset, spec.split, t.batch_size, t.batches_per_epoch, t.device


def recorded_epoch_seconds(runs_dir: Path, spec: RunSpec) -> float | None:
    """The median seconds an epoch took in the finished runs under `runs_dir` of the same head,
    dataset, split, batch size, batches per epoch and device: from file times (the run's marker to
    its last result), over the epochs its metrics list. None when there is none."""
    if not runs_dir.is_dir():
        return None
    times = []
    for result in runs_dir.rglob(f"stage1/{STAGE_RESULT}"):
        run = result.parent.parent
        config = _json(run / CONFIG)
        if config is None or not (run / RUN_MARKER).is_file():
            continue
        other = config.get("spec", {})
        train = other.get("train", {})
        if (other.get("head"), other.get("dataset"), other.get("split"), train.get("batch_size"),
                train.get("batches_per_epoch"), train.get("device", "cpu")) != _shape(spec):
            continue
        epochs = _lines(result.parent / METRICS)
        end = result.stat().st_mtime
        if (run / RESULTS).is_file():
            epochs += _lines(stage_file(run, 2, METRICS))
            end = (run / RESULTS).stat().st_mtime
        took = end - (run / RUN_MARKER).stat().st_mtime
        if epochs and took > 0:  # a copy without its file times (cp without -p) tells nothing
            times.append(took / epochs)
    return statistics.median(times) if times else None


def measured_epoch_seconds(work: Work, spec: RunSpec) -> float:
    """The seconds one epoch of `spec` should take here: two tiny epochs of its head on the
    planned data (1 and 3 batches, each with its validation pass) give the per-batch and the
    per-epoch parts. Nothing is written; the head is thrown away."""
    import torch

    from clipclap_cli.runs.folder import cpu_threads
    from clipclap_cli.runs.spec import build_head
    from clipclap_cli.train.trainer import Trainer

    data = work.data(spec)

    def epoch(batches: int) -> float:
        torch.manual_seed(spec.train.seed)
        head = build_head(spec, work.pm).to(spec.train.device)
        cfg = dataclasses.replace(spec.train, epochs=1, batches_per_epoch=batches)
        trainer = Trainer(head, data, data.sets.train[1], data.sets.val, cfg)
        start = time.perf_counter()
        trainer.run_epoch()
        return time.perf_counter() - start

    with cpu_threads(work.threads) if work.threads else contextlib.nullcontext():
        epoch(1)  # warm-up: first calls are slow
        one, three = epoch(1), epoch(3)
    per_batch = max(three - one, 0.0) / 2
    fixed = max(one - per_batch, 0.0)
    if training_free(spec, work.pm):
        return max(one, 1e-3)
    return max(fixed + per_batch * spec.train.batches_per_epoch, 1e-3)


def describe_launcher(launcher: Launcher, work: Work) -> tuple[str, int, int]:
    """(where the runs would train, the number of tasks, how many train at once) for `launcher`
    (`launcher_for`'s choice): a launcher that has `describe(work)` says so itself."""
    from clipclap_cli.plugins.registry import get_head
    from clipclap_cli.train.launchers import InProcess, OnRanks, Workers
    from clipclap_cli.train.stacked import stack_groups

    n = len(work.plan)
    if hasattr(launcher, "describe"):
        return launcher.describe(work)
    if isinstance(launcher, Workers):
        jobs = min(launcher.jobs, n)
        return f"{jobs} worker processes", n, jobs
    if isinstance(launcher, OnRanks):
        r = launcher.ranks
        return f"torchrun rank {r.rank} of {r.world} (its share)", len(r.share(list(range(n)))), 1
    if isinstance(launcher, InProcess) and launcher.stack:
        groups = stack_groups(work.plan, {spec.head: get_head(spec.head, work.pm) for _, spec in work.plan})
        stacks = sum(len(g) > 1 for g in groups)
        return "this process" + (f", {stacks} stack(s) of seeds" if stacks else ""), len(groups), 1
    return ("this process" if isinstance(launcher, InProcess) else type(launcher).__name__), n, 1


def _json(path: Path) -> dict | None:
    try:
        return read_json(path) if path.is_file() else None
    except Exception:  # a damaged or unreadable file: that stage is not done
        return None


def _lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0
    except OSError:
        return 0
