"""Processes that stop with their command: `extract`'s decode workers and `train --jobs` workers.

A command can be stopped three ways, and none may leave a worker behind:
- Ctrl-C (SIGINT to the terminal's process group): KeyboardInterrupt in the command, whose
  cleanup stops its workers (they get the SIGINT too);
- SIGTERM or SIGHUP to the command alone (a scheduler's stop, a closed terminal): `run` turns
  them into `Terminated`, a KeyboardInterrupt, so the same cleanup runs (by default they
  would kill the command at once and leave its workers running);
- kill -9 of the command: nothing runs in it, so each worker watches it (`die_with`) and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"Signals that stop a command like Ctrl-C does (with their own exit status, 128 + the signal)"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP asked the command to stop: a KeyboardInterrupt, so that every cleanup
    written for Ctrl-C runs for it too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), STOP_SIGNALS raise Terminated there. A signal
    that is ignored (`nohup` ignores SIGHUP) or handled by an embedding program is left as it is."""
    def handler(signum, frame):
        raise Terminated(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) == signal.SIG_DFL}
    except ValueError:  # not the main thread (an embedding program): leave its signals alone
        yield
        return
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def die_with(main_pid: int) -> None:
    """Worker initializer: exit as soon as process `main_pid` (the command) is gone, even killed
    with -9. (A forkserver's workers are its children, not the command's, and they keep it alive,
    so neither PR_SET_PDEATHSIG nor the forkserver's own watch would stop them.) A thread waits on
    the process's pidfd (Linux); elsewhere it polls once a second."""
    import select
    import threading

    def watch() -> None:
        try:
            fd = os.pidfd_open(main_pid)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):  # no pidfd here: poll
            while True:
                try:
                    os.kill(main_pid, 0)
                except ProcessLookupError:
                    os._exit(1)
                time.sleep(1.0)
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(1)

    threading.Thread(target=watch, name="clipclap-watch-main", daemon=True).start()


def worker_context(*preload: str):
    """The multiprocessing context of a command's worker processes: forked from a server process
    (multiprocessing's forkserver) that has imported `preload` once, so that each worker starts in
    milliseconds instead of importing torch anew (about 7 s of CPU each). The server imports and
    never computes: a worker inherits no torch thread pool, as it would from a forked command.
    The caller's main module comes first, as spawn would run it, so a plugin defined there
    unpickles in the workers. Spawn where the platform has no forkserver. (The server is one per
    process: a command whose workers started one before keeps its imports.)"""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", *preload])
    return context
