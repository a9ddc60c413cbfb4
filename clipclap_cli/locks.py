"""One process at a time: a lock file that names its holder's host and pid (folders only)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[str | None]:
    """Hold `lock` for the block: yields None when this process holds it, else its live
    holder ('HOST PID'). A lock left by a dead process on this host is taken over; one from
    another host is respected (its process may live: remove the file by hand if that host died)."""
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _live_holder(lock)
            if holder is None:
                lock.unlink(missing_ok=True)
                continue
            yield holder
            return
        os.write(fd, me.encode())
        os.close(fd)
        try:
            yield None
        finally:
            lock.unlink(missing_ok=True)
        return
    yield _live_holder(lock) or "another process"


def _live_holder(lock: Path) -> str | None:
    """The lock's holder, or None when it is gone (a dead pid on this host, an unreadable file)."""
    try:
        host, pid = lock.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return f"{host} {pid}" if may_live(host, pid) else None


def may_live(host: str, pid: str | int, this_host: str | None = None) -> bool:
    """Whether process `pid` on `host` may still run: False only when it is known gone (a pid
    no process has, on this host); another host's process is taken to live."""
    if host != (this_host or socket.gethostname()):
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        pass
    return True
