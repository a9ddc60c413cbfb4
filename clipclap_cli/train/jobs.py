"""Several runs side by side in worker processes (`clipclap train --jobs N`); no rich here.

A batch of 64 keeps few cores busy, so on the CPU runs trained side by side with a share of the
threads each finish sooner than the same runs one after the other. Each worker trains whole runs
through `train_run` (so a run trained here has the bytes of the same run trained alone with the
same `--threads`) with the caller's plugins (`portable_plugins`: the same modules, under the same
names, whether they came from entry points or were registered by hand), and reports progress as
scheduler events (`train/scheduler.py`) on a queue, which the caller passes on.
"""

from __future__ import annotations

import os
import queue as queue_module
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from clipclap_cli.errors import ClipclapError
from clipclap_cli.plugins.manager import PortablePlugin, rebuild_plugin_manager
from clipclap_cli.processes import die_with, worker_context
from clipclap_cli.runs.spec import RunSpec
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.train.scheduler import Failed, Finished, RunEvent, Work, callbacks
from clipclap_cli.train.stages import train_run

_events = None  # the worker's end of the event queue (set by _init_worker)
_plugins: list[PortablePlugin] = []  # the caller's plugins (set by _init_worker)
_manager = None  # the plugin manager built from them, on first use


def _init_worker(events, threads: int, plugins: list[PortablePlugin], command_pid: int) -> None:
    """A worker's setup: exit when the command does (`die_with`: even killed with -9), its event
    queue, the caller's plugins, and its share of the cores as torch's default threads (what a
    new run records when no --threads was given)."""
    global _events, _plugins
    import torch

    die_with(command_pid)
    _events, _plugins = events, plugins
    torch.set_num_threads(threads)


def _plugin_manager():
    """The worker's plugin manager, built on first use: a plugin that fails to load then fails
    the run with its reason, instead of breaking the pool (which reads as a dead worker)."""
    global _manager
    if _manager is None:
        try:
            _manager = rebuild_plugin_manager(_plugins)
        except Exception as e:  # an import or unpickling error, of whatever kind
            raise ClipclapError(f"a worker process cannot load the plugins: {e}") from None
    return _manager


def _train_in_worker(run: int, path: Path, spec: RunSpec, store: str, stages: tuple[int, ...],
                     threads: int | None) -> Finished | Failed:
    """Train run `run` of the plan here, its events on the queue (no Step events: the caller's
    bars count epochs); its end is returned."""
    try:
        work = Work([(path, spec)], FeatureStore(store), stages)
        return Finished(run, train_run(path, spec, work.store.location, work.data(spec), stages,
                                       callbacks(run, path, _events.put, steps=False), _plugin_manager(), threads))
    except ClipclapError as e:
        return Failed(run, str(e))


def train_in_workers(plan: list[tuple[Path, RunSpec]], store: str, stages: tuple[int, ...], jobs: int,
                     threads: int | None, on_event: Callable[[RunEvent], None],
                     plugins: list[PortablePlugin]) -> list[Finished | Failed]:
    """Train every (folder, spec) of `plan`, `jobs` at a time in worker processes that load
    `plugins` (`portable_plugins` of the caller's manager); `on_event` sees every worker's
    events in this process. Threads per run: `threads`, else what a run
    recorded, else an equal share of this machine's cores. Returns how each run ended, in `plan`'s order."""
    import torch

    share = max(1, torch.get_num_threads() // jobs)
    context = worker_context("torch", "torch._dynamo", __name__)  # torch's optimizers import torch._dynamo
    events = context.Queue()
    outcomes: dict[int, Finished | Failed] = {}
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(events, share, plugins, os.getpid())) as pool:
        pending: set[Future] = {pool.submit(_train_in_worker, i, path, spec, store, stages, threads)
                                for i, (path, spec) in enumerate(plan)}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(events, on_event)
                for future in done:
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:  # killed (out of memory, a signal): the runs resume
                        raise ClipclapError("a worker process died; rerun the same command to resume "
                                            "the runs from their last completed epochs") from None
                    outcomes[outcome.run] = outcome
            _drain(events, on_event, timeout=0.2)  # a finished worker's last events may still be in transit
        except BaseException:
            for future in pending:
                future.cancel()
            for process in list(getattr(pool, "_processes", {}).values()):  # no public way to stop them
                process.terminate()
            raise
    return [outcomes[i] for i in range(len(plan))]


def _drain(events, on_event: Callable[[RunEvent], None], timeout: float = 0.0) -> None:
    """Hand every queued event to `on_event`; with `timeout`, also those still on their way."""
    while True:
        try:
            on_event(events.get(timeout=timeout) if timeout else events.get_nowait())
        except queue_module.Empty:
            return
