"""`python -m clipclap_cli ARGS` as a process of its own, without paying for its imports again.

Tests that kill, stop or race clipclap commands need them in processes of their own. Each such
process used to import torch, torch's compiler stack (which every optimizer loads) and open_clip
anew: 6 to 12 s of CPU before its first line of work, a few dozen times per suite. Here one server
per test process imports them once and forks a child per command, as Android's zygote or
multiprocessing's forkserver do. The child is a process like any other: its own pid (a session
leader when asked), the environment, working folder and standard streams the test gives it, and
the usual interpreter exit (atexit handlers, exit status, a traceback for an uncaught exception).
What it is not is freshly started: PYTHONPATH's folders are put on `sys.path` where a new
interpreter puts them (so the distributions there are found, their entry points too), but a test of
what a new interpreter does as it starts (a sitecustomize module, other PYTHON* settings, lazy
imports) starts a real subprocess instead; `clipclap()` refuses such settings.

`clipclap(args, ...)` returns a `subprocess.Popen`-like handle (pid, poll, wait, communicate, kill,
send_signal, returncode); `clipclap_run(args, ...)` waits and returns a `CompletedProcess`.
`Prestarted(python, env, preload)` is a server of another Python (the built wheel's virtual
environment), started in `env`, importing only `preload` (there clipclap comes from the wheel, in
each child, and never from this clone).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

#: what the server imports before it forks: the costly part of starting a clipclap command
PRELOAD = ("torch", "torch._dynamo", "torch.optim", "numpy", "zarr", "open_clip", "av", "clipclap_cli.cli",
           "clipclap_cli.train.trainer", "clipclap_cli.train.scheduler", "clipclap_cli.extract.extraction",
           "clipclap_cli.extract.video_features", "clipclap_cli.report.plots")
_MESSAGE = 65536


# ------------------------------------------------------------------------------------ the server
def _serve(control: socket.socket) -> tuple[dict, list[int]]:
    """The server's loop: fork a child per request, report each child's pid and exit status. Returns
    only in a child, with its request and standard streams; the server itself exits when the test
    process closes its end."""
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of pytest ends the server by closing its socket
    while True:
        readable, _, _ = select.select([control, wakeup_r], [], [])
        if wakeup_r in readable:
            os.read(wakeup_r, 4096)
        while True:  # every child that ended, however many signals were merged
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            control.send(json.dumps({"exited": pid, "returncode": os.waitstatus_to_exitcode(status)}).encode())
        if control not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(control, _MESSAGE, 3)
        if not message:
            sys.exit(0)
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for fd in (wakeup_r, wakeup_w):
                os.close(fd)
            control.close()
            return json.loads(message), fds
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"started": pid}).encode())


def _become(request: dict, fds: list[int]) -> None:
    """In the child: take the test's streams, environment, folder and signal dispositions, as a
    process started with them would have."""
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as a new interpreter sets it
    if request["new_session"]:
        os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # where `python -m` looks first, not this file's folder
    sys.path[1:1] = _python_path(os.environ)  # where a new interpreter puts them
    importlib.invalidate_caches()
    import torch

    threads = os.environ.get("OMP_NUM_THREADS")  # torch read it once, when the server imported it
    torch.set_num_threads(int(threads) if threads else _DEFAULT_THREADS or os.cpu_count() or 1)
    sys.argv = ["clipclap", *request["args"]]


def _python_path(env) -> list[str]:
    """PYTHONPATH's folders; a ValueError where one holds what only a starting interpreter runs."""
    folders = [f for f in env.get("PYTHONPATH", "").split(os.pathsep) if f]
    for folder in folders:
        for name in ("sitecustomize.py", "usercustomize.py"):
            if (Path(folder) / name).exists():
                raise ValueError(f"{folder} holds {name}, which runs as an interpreter starts: use subprocess")
    return folders


_DEFAULT_THREADS: int | None = None  # torch's own count, where the server's environment left it to torch


def _server_main(fd: int, preload: list[str]) -> None:
    global _DEFAULT_THREADS
    for name in preload:
        __import__(name)
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        _DEFAULT_THREADS = torch.get_num_threads()
    if "clipclap_cli.cli" in preload:
        from clipclap_cli.plugins.manager import make_plugin_manager

        make_plugin_manager(entrypoints=False)  # the built-in plugins' modules
    control = socket.socket(fileno=fd)
    request, fds = _serve(control)
    _become(request, fds)
    os._exit(_run_as_main(request["prelude"]))


def _run_as_main(prelude: str) -> int:
    """`python -c "PRELUDE; from clipclap_cli.cli import main; main()"` (`python -m clipclap_cli`
    without a prelude), to its exit status, and the interpreter's exit but for its last
    step: what it prints for an uncaught exception, its threads joined, its atexit handlers, its
    streams flushed. The last step, freeing every object, is left out: in a child that shares the
    server's memory until it writes to it, that took 1.6 s (copying every page it touches)."""
    import runpy
    import threading
    import traceback

    code, interrupted = 0, False
    try:
        if prelude:  # run as `python -c` runs its code, in a module of its own
            exec(compile(prelude, "<string>", "exec"), {"__name__": "__prelude__"})
        runpy.run_module("clipclap_cli", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException as error:  # what the interpreter does with it
        traceback.print_exception(error)
        code, interrupted = 1, isinstance(error, KeyboardInterrupt)
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if interrupted:  # as Python ends on an uncaught KeyboardInterrupt: killed by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


# ------------------------------------------------------------------------------------ the client
class _Server:
    """A server process (`python` importing `preload`, started in `env`): this test process's own
    is started on first use and ends when the test process ends."""

    def __init__(self, python: str = sys.executable, env: dict[str, str] | None = None,
                 preload: tuple[str, ...] = PRELOAD):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.env = dict(os.environ if env is None else env)  # what a child's environment is compared with
        self.process = subprocess.Popen([python, __file__, str(theirs.fileno()), *preload], pass_fds=[theirs.fileno()],
                                        stdin=subprocess.DEVNULL, env=self.env)
        theirs.close()
        self.control = ours
        self.lock = threading.Lock()  # one request at a time
        self.changed = threading.Condition()
        self.started: list[int] = []
        self.exited: dict[int, int] = {}
        threading.Thread(target=self._listen, daemon=True, name="prestarted").start()
        atexit.register(self.control.close)

    def _listen(self) -> None:
        while True:
            try:
                message = self.control.recv(_MESSAGE)
            except OSError:
                message = b""
            with self.changed:
                if not message:
                    self.exited[-1] = -1  # the server is gone: nothing more will be reported
                    self.changed.notify_all()
                    return
                report = json.loads(message)
                if "started" in report:
                    self.started.append(report["started"])
                else:
                    self.exited[report["exited"]] = report["returncode"]
                self.changed.notify_all()

    def start(self, request: dict, fds: list[int]) -> int:
        with self.lock:
            socket.send_fds(self.control, [json.dumps(request).encode()], fds)
            with self.changed:
                if not self.changed.wait_for(lambda: self.started or -1 in self.exited, timeout=300):
                    raise RuntimeError("the prestarted server did not fork")
                if not self.started:
                    raise RuntimeError(f"the prestarted server ended (exit {self.process.poll()})")
                return self.started.pop(0)

    def returncode(self, pid: int, timeout: float | None) -> int | None:
        with self.changed:
            self.changed.wait_for(lambda: pid in self.exited or -1 in self.exited, timeout=timeout)
            if pid not in self.exited and -1 in self.exited:
                raise RuntimeError("the prestarted server ended before its child")
            return self.exited.get(pid)


_server: _Server | None = None
_server_lock = threading.Lock()


def _the_server() -> _Server:
    global _server
    with _server_lock:
        if _server is None or _server.process.poll() is not None:
            _server = _Server()
        return _server


class Process:
    """What `subprocess.Popen` gives, for a command forked by the server."""

    def __init__(self, args, *, stdout=None, stderr=None, env=None, cwd=None, text=False, start_new_session=False,
                 prelude: str = "", server: _Server | None = None):
        server = server or _the_server()
        env = dict(os.environ if env is None else env)
        changed = sorted(n for n in set(env) | set(server.env)
                         if n.startswith("PYTHON") and n != "PYTHONPATH" and env.get(n) != server.env.get(n))
        if changed:
            raise ValueError(f"{changed} take effect as an interpreter starts: use subprocess for this command")
        _python_path(env)
        self.args, self.text, self.returncode = [str(a) for a in args], text, None
        streams, mine, self._pipes = [], [], {}
        null = os.open(os.devnull, os.O_RDWR)
        streams.append(null)  # stdin: nothing to read, as under pytest
        for name, how in (("stdout", stdout), ("stderr", stderr)):
            if how == subprocess.PIPE:
                read, write = os.pipe()
                self._pipes[name] = os.fdopen(read, "rb")
                streams.append(write)
                mine.append(write)
            elif how in (subprocess.DEVNULL, None):  # None: this process's own stream
                streams.append(null if how == subprocess.DEVNULL else {"stdout": 1, "stderr": 2}[name])
            else:
                raise ValueError(f"{name}: PIPE, DEVNULL or None, not {how!r}")
        self._server = server
        try:
            self.pid = self._server.start({"args": self.args, "env": env, "cwd": str(cwd or Path.cwd()),
                                           "new_session": start_new_session, "prelude": prelude}, streams)
        finally:
            for fd in {*mine, null}:
                os.close(fd)
        self.stdout, self.stderr = self._pipes.get("stdout"), self._pipes.get("stderr")

    def poll(self) -> int | None:
        return self.wait(timeout=0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid, timeout)
            if self.returncode is None and timeout != 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple:
        """Both pipes read to their end (also while the child writes more than a pipe holds), then
        the exit status."""
        read: dict[str, bytes] = {}
        readers = [threading.Thread(target=lambda n=name, f=pipe: read.__setitem__(n, f.read()), daemon=True)
                   for name, pipe in self._pipes.items()]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(timeout)
        out = [read.get(name) for name in ("stdout", "stderr")]
        return tuple(o.decode() if self.text and o is not None else o for o in out)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def clipclap(args, **kwargs) -> Process:
    """`python -m clipclap_cli ARGS` started; keywords as `subprocess.Popen`'s (stdout, stderr: PIPE,
    DEVNULL or None; env, cwd, text, start_new_session), and `prelude`: Python code the child runs
    first, as `python -c "PRELUDE; from clipclap_cli.cli import main; main()" ARGS` would (to
    register what a test defines, such as an fsspec protocol). Pipes give bytes; `communicate`
    decodes them with `text`."""
    return Process(args, **kwargs)


def clipclap_run(args, *, env=None, cwd=None, timeout: float | None = None, prelude: str = "",
                 server: _Server | None = None) -> subprocess.CompletedProcess:
    """`subprocess.run([python, -m, clipclap_cli, *args], capture_output=True, text=True)`;
    `prelude` as `clipclap`'s."""
    process = Process(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True,
                      prelude=prelude, server=server)
    out, err = process.communicate(timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


class Prestarted:
    """A server of another Python, for another environment's clipclap: `run` is `clipclap_run`
    there. Close it (or leave the `with` block) to end it."""

    def __init__(self, python: str | Path, env: dict[str, str], preload: tuple[str, ...]):
        self._server = _Server(str(python), env, preload)

    def run(self, args, *, env=None, cwd=None, timeout: float | None = None) -> subprocess.CompletedProcess:
        return clipclap_run(args, env=env, cwd=cwd, timeout=timeout, server=self._server)

    def close(self) -> None:
        """End the server: it exits when its end of the socket sees ours shut (its children are
        the test's to end)."""
        self._server.control.shutdown(socket.SHUT_RDWR)  # close() alone would not wake the listening thread
        self._server.control.close()
        self._server.process.wait(timeout=60)

    def __enter__(self) -> Prestarted:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    _server_main(int(sys.argv[1]), sys.argv[2:])
