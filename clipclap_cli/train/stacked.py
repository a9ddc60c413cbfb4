"""Runs that differ only in their seed, trained as one stacked model (clipclap_cli/train/stacking.py).

Each run keeps its own folder, files, checkpoints and results, in the format a run trained
alone writes: a stacked run resumes alone and a run started alone resumes in a stack. A run
whose stage ends earlier (stage 2 trains as many epochs as the run's stage 1 chose) leaves the
stack, and the others go on without it; a run whose loss turns non-finite fails alone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from clipclap_cli.data.protocol_data import ProtocolData
from clipclap_cli.errors import RunError
from clipclap_cli.plugins.fusion_head import FusionHead
from clipclap_cli.runs.files import LOCK
from clipclap_cli.runs.folder import cpu_threads, load_spec, open_run
from clipclap_cli.runs.results import evaluate_loaded_run
from clipclap_cli.runs.spec import RunSpec
from clipclap_cli.store.locations import StoreLocation
from clipclap_cli.store.locks import exclusive
from clipclap_cli.train.stacking import stacked_epoch
from clipclap_cli.train.stages import Callbacks, StageRun, busy, start_stage


def can_stack(head_cls: type) -> bool:
    """Whether runs of `head_cls` can train stacked: it has a stacked form and something to learn."""
    return not head_cls.training_free and head_cls.stacked.__func__ is not FusionHead.stacked.__func__


def stack_groups(plan: list[tuple[Path, RunSpec]], head_classes: dict[str, type]) -> list[list[int]]:
    """`plan`'s runs (indices, in order) as groups that train together: runs of a head that can
    stack (`head_classes[spec.head]`) whose specs differ only in the seed share a group; every
    other run is a group of its own."""
    groups: dict[str, list[int]] = {}
    order: list[list[int]] = []
    for i, (_, spec) in enumerate(plan):
        if not can_stack(head_classes[spec.head]):
            order.append([i])
            continue
        d = spec.as_dict()
        key = repr(sorted((d | {"train": {**d["train"], "seed": None}}).items()))
        if key not in groups:
            groups[key] = []
            order.append(groups[key])
        groups[key].append(i)
    return order


def train_stack(runs: list[tuple[Path, RunSpec]], store: StoreLocation, data: ProtocolData, stages: tuple[int, ...],
                callbacks: list[Callbacks], on_step=None, pm=None,
                threads: int | None = None) -> list[dict | RunError | None]:
    """Train the requested stages of `runs` (specs that differ only in the seed) as one stack on
    `data` (their one read of the store at `store`); with both stages, evaluate each. Per run: its
    test results (None with stage 1 alone), or the RunError that ended it. `on_step(step)` follows
    the stack's steps."""
    outcomes: dict[int, dict | RunError | None] = {}
    with contextlib.ExitStack() as held:
        counts = set()
        for i, (path, run_spec) in enumerate(runs):  # a folder that cannot train fails its run alone
            try:
                count = open_run(path, run_spec, store, data, threads)
            except RunError as e:
                outcomes[i] = e
                continue
            holder = held.enter_context(exclusive(path / LOCK))
            if holder is not None:
                outcomes[i] = busy(path, holder)
                continue
            counts.add(count)
        if len(counts) > 1:
            raise RunError(f"these runs were started with different CPU thread counts ({sorted(counts)}); "
                           "train them one by one (--no-stack)")
        if counts:
            held.enter_context(cpu_threads(counts.pop()))
        for stage in stages:
            _train_stage_stacked(runs, data, stage, callbacks, outcomes, on_step, pm)
        if 2 in stages:
            for i, (path, _) in enumerate(runs):
                if i not in outcomes:
                    outcomes[i] = evaluate_loaded_run(path, *load_spec(path), None, pm, data)
    return [outcomes.get(i) for i in range(len(runs))]


def _train_stage_stacked(runs, data, stage, callbacks, outcomes, on_step, pm) -> None:
    """One stage of every run not failed yet, stacked; a run that fails lands in `outcomes`."""
    active: list[tuple[int, StageRun]] = []
    for i, (path, spec) in enumerate(runs):
        if i in outcomes:
            continue
        try:
            run = start_stage(path, spec, data, stage, callbacks[i], pm, stacked=True)
        except RunError as e:
            outcomes[i] = e
            continue
        if isinstance(run, StageRun):
            active.append((i, run))
    while active:
        training = [(i, run) for i, run in active if run.unfinished]
        records = stacked_epoch([run.trainer for _, run in training], on_step) if training else []
        for (i, run), record in zip(training, records, strict=True):
            if isinstance(record, RunError):
                outcomes[i] = run.failed(record)
            else:
                run.save_epoch(record)
        for i, run in active:
            if i not in outcomes and not run.unfinished:
                run.finish()
        active = [(i, run) for i, run in active if i not in outcomes and run.unfinished]
