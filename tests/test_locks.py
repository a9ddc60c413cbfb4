"""`locks.exclusive`: one holder at a time among racing processes, a dead holder's lock taken,
a refused process told who holds it."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from clipclap_cli.store import locks
from clipclap_cli.store.locks import exclusive

ME = f"{socket.gethostname()} {os.getpid()}"

# A racer: waits at the start line (the file `go`), then for `seconds` takes the lock again and
# again, logging `PID in` / `PID out NAMED` with atomic appends around each brief hold (NAMED:
# whether the lock file named it while it held the lock).
RACER = """
import os, socket, sys, time
from pathlib import Path
from clipclap_cli.store.locks import exclusive
lock, log, ready, go, seconds = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5])
me = f"{socket.gethostname()} {os.getpid()}"
out = os.open(log, os.O_WRONLY | os.O_APPEND)
ready.touch()
while not go.exists():
    time.sleep(0.001)
end = time.monotonic() + seconds
while time.monotonic() < end:
    with exclusive(lock) as holder:
        if holder is None:
            os.write(out, f"{os.getpid()} in\\n".encode())
            try:
                named = lock.read_text() == me
            except FileNotFoundError:  # another process removed it
                named = False
            time.sleep(0.001)
            os.write(out, f"{os.getpid()} out {named}\\n".encode())
"""

# Takes the lock, says so, and keeps it until killed.
HOLDER = """
import sys, time
from pathlib import Path
from clipclap_cli.store.locks import exclusive
with exclusive(Path(sys.argv[1])) as holder:
    assert holder is None, holder
    print("held", flush=True)
    time.sleep(60)
"""


def _dead_pid() -> str:
    """The pid of a process that has exited (and been reaped)."""
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture
def holder(tmp_path):
    """Another process holding `tmp_path / "x.lock"`: (its Popen, the lock)."""
    lock = tmp_path / "x.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        yield proc, lock
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_racing_processes_hold_the_lock_one_at_a_time(tmp_path):
    """16 processes released at once take and release one lock for half a second, starting from a
    stale lock file (a dead pid on this host): the log of their holds never shows two at once."""
    lock, log, n = tmp_path / "x.lock", tmp_path / "log", 16
    lock.write_text(f"{socket.gethostname()} {_dead_pid()}")
    log.touch()
    ready = [tmp_path / f"ready{i}" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(lock), str(log), str(r), str(tmp_path / "go"), "0.5"],
                              stderr=subprocess.PIPE, text=True) for r in ready]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break  # a racer died: its error is below
            time.sleep(0.01)
        (tmp_path / "go").touch()
        errors = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0] * n, errors
    lines = log.read_text().splitlines()
    assert lines, "nobody got the lock"
    assert len(lines) % 2 == 0, lines[-4:]
    for i in range(0, len(lines), 2):
        pid = lines[i].split()[0]
        assert (lines[i], lines[i + 1]) == (f"{pid} in", f"{pid} out True"), lines[max(0, i - 4):i + 6]
    assert not lock.exists()  # the last holder removed it


def test_a_refused_process_is_told_the_holder(holder):
    proc, lock = holder
    with exclusive(lock) as mine:
        assert mine == f"{socket.gethostname()} {proc.pid}"
    assert lock.read_text() == f"{socket.gethostname()} {proc.pid}"  # the refused one left it alone


def test_the_lock_of_a_killed_process_is_taken(holder):
    """A holder killed with SIGKILL leaves its file behind; the next process takes the lock."""
    proc, lock = holder
    proc.kill()
    proc.wait()
    assert lock.exists()
    with exclusive(lock) as mine:
        assert mine is None
        assert lock.read_text() == ME
    assert not lock.exists()


@pytest.mark.parametrize("text", ["dead", "", "garbage"], ids=["dead-pid", "empty", "garbage"])
def test_a_file_left_without_a_live_holder_does_not_block(tmp_path, text):
    """A file naming a dead pid on this host (from a crash, or an older clipclap), an empty one
    (a crash between creating and naming) or an unreadable one: taken over."""
    lock = tmp_path / "x.lock"
    lock.write_text(f"{socket.gethostname()} {_dead_pid()}" if text == "dead" else text)
    with exclusive(lock) as mine, exclusive(lock) as second:
        assert mine is None and second == ME
        assert lock.read_text() == ME
    assert not lock.exists()


@pytest.mark.parametrize("text", [f"some-other-host {os.getpid()}", ME], ids=["another-host", "live-pid-here"])
def test_a_named_holder_without_a_flock_is_respected(tmp_path, text):
    """Another host's holder (whose flock may not reach this host), or a live process here that
    holds no flock (an older clipclap): refused, and the file is left as it was."""
    lock = tmp_path / "x.lock"
    lock.write_text(text)
    with exclusive(lock) as mine:
        assert mine == text
    assert lock.read_text() == text


def test_a_holder_not_named_yet_is_another_process(tmp_path):
    """A holder between taking the flock and writing its name: the refused one cannot name it."""
    lock = tmp_path / "x.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with exclusive(lock) as mine:
            assert mine == "another process"
    finally:
        os.close(fd)
    assert lock.read_text() == ""


def test_a_lock_on_a_file_the_holder_removed_is_no_lock(tmp_path, monkeypatch):
    """A process opens the lock file, its holder releases it (removing the file) and the process
    then flocks the removed file: it must not count that as the lock, but take the path's new
    file, so that a third process is refused rather than holding it too."""
    lock = tmp_path / "x.lock"
    first = exclusive(lock)
    assert first.__enter__() is None
    calls = []

    def flock(fd, op):
        if not calls:
            first.__exit__(None, None, None)  # the holder leaves between our open and our flock
        calls.append(op)
        return fcntl.flock(fd, op)

    monkeypatch.setattr(locks, "fcntl", SimpleNamespace(flock=flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB))
    with exclusive(lock) as mine:
        assert mine is None and len(calls) == 2  # it locked the removed file, then the new one
        assert lock.read_text() == ME
        with exclusive(lock) as third:
            assert third == ME
    assert not lock.exists()
