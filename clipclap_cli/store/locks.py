"""One process at a time: a lock file that names its holder's host and pid (folders only).

The file is held with `fcntl.flock` for the block: the kernel gives the flock to one open file
at a time and drops it when its process dies, so two processes can never both hold the lock and
a crashed holder needs no takeover race. The file's text ('HOST PID') only says who holds it, and
keeps a holder that flock cannot see (another host, or an older clipclap that wrote the file
without a flock) respected. POSIX only (fcntl)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock: Path, note: str = "") -> Iterator[str | None]:
    """Hold `lock` for the block: yields None when this process holds it, else its holder
    ('HOST PID', then what it is doing in parentheses when it said so in `note`; or "another
    process" while the holder has not written its name yet).

    How: open (or create) the file, `flock(LOCK_EX | LOCK_NB)` it, check that the path still
    names the inode locked (a holder that leaves unlinks the file, flocked, before closing it:
    a process that opened the old inode just before must not count it as the lock, so it tries
    again on the path's new file), then read it. Under the flock the text is trusted: a name
    whose process may live (another host's, or a live pid here that holds no flock: an older
    clipclap) keeps the lock refused; a dead pid on this host, or no name, is a lock left behind
    and is taken over in place (no unlink, so no race). The holder writes its name and removes the
    file when the block ends. A waiter is never blocked: it is refused at once.

    Across hosts (a shared folder on NFS) flock is best effort: Linux clients map it onto NFS
    byte-range locks, other systems may keep it local. Another host's name in the file is
    respected either way (its process may live: remove the file by hand if that host died)."""
    me = f"{socket.gethostname()} {os.getpid()}" + (f"\n{note}" if note else "")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            current = _names(lock, fd)
        except BlockingIOError:
            os.close(fd)
            yield _text(lock) or "another process"
            return
        except BaseException:  # no locks on this file system (ENOLCK), ...: say so, keep no fd
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)  # the holder left (unlinked it) after we opened it: try the path's new file
    try:
        holder = _live_holder(os.pread(fd, 4096, 0).decode(errors="replace"))
        if holder is not None:
            yield holder
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        try:
            yield None
        finally:
            os.ftruncate(fd, 0)  # first: a file left behind (the unlink failed) names no holder
            lock.unlink(missing_ok=True)  # while flocked: a process that opened this inode retries
    finally:
        os.close(fd)


def _names(lock: Path, fd: int) -> bool:
    """Whether the path `lock` still names the file open as `fd`."""
    try:
        path = os.stat(lock)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (path.st_dev, path.st_ino) == (mine.st_dev, mine.st_ino)


def _described(text: str) -> tuple[str, str, str] | None:
    """(host, pid, what it does) of a lock file's text ('HOST PID', then a line saying what the
    holder does), or None when it names no holder."""
    first, _, note = text.partition("\n")
    try:
        host, pid = first.split()
    except ValueError:
        return None
    return host, pid, " ".join(note.split())[:200]


def _holder_text(host: str, pid: str, note: str) -> str:
    return f"{host} {pid}" + (f" ({note})" if note else "")


def _text(lock: Path) -> str | None:
    """Who a lock file names ('HOST PID (what it does)'), or None when it names none (yet)."""
    try:
        found = _described(lock.read_text(errors="replace"))
    except FileNotFoundError:
        return None
    return _holder_text(*found) if found else None


def _live_holder(text: str) -> str | None:
    """The holder a lock file's text names, or None when it is gone (a dead pid on this host)
    or the text names none."""
    found = _described(text)
    return _holder_text(*found) if found and may_live(found[0], found[1]) else None


class LockWaitExpired(Exception):
    """`waiting` gave up: the lock was still held after the time allowed (`holder` names who)."""

    def __init__(self, holder: str, waited_s: float):
        super().__init__(holder)
        self.holder, self.waited_s = holder, waited_s


@contextlib.contextmanager
def waiting(lock: Path, note: str, wait_s: float, on_wait: Callable[[str], None] | None = None,
            poll_s: float = 0.1) -> Iterator[None]:
    """Hold `lock` (`exclusive`) for the block, waiting for another holder to let go: `on_wait`
    is called once with the holder's name when the lock is busy, and after `wait_s` seconds of
    waiting `LockWaitExpired` is raised (0: refused at once)."""
    deadline = time.monotonic() + max(0.0, wait_s)
    told = False
    while True:
        with exclusive(lock, note) as holder:
            if holder is None:
                yield
                return
        if time.monotonic() >= deadline:
            raise LockWaitExpired(holder, wait_s)
        if not told and on_wait is not None:
            on_wait(holder)
            told = True
        time.sleep(poll_s)


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
