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
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[str | None]:
    """Hold `lock` for the block: yields None when this process holds it, else its holder
    ('HOST PID', or "another process" while the holder has not written its name yet).

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
    me = f"{socket.gethostname()} {os.getpid()}"
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


def _text(lock: Path) -> str | None:
    """The name in a lock file ('HOST PID'), or None when it has none (yet)."""
    try:
        host, pid = lock.read_text(errors="replace").split()
    except (FileNotFoundError, ValueError):
        return None
    return f"{host} {pid}"


def _live_holder(text: str) -> str | None:
    """The holder a lock file's text names, or None when it is gone (a dead pid on this host)
    or the text names none."""
    try:
        host, pid = text.split()
    except ValueError:
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
