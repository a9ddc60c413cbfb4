"""The suite's fixtures and session checks. Helpers that tests call are in helpers.py.

Fixtures, one meaning per name:
  pm, cli          a fresh plugin manager (built-ins only) per test; `clipclap ARGS` run in-process
  demo_store       the demo benchmark's store (read-only)
  demo_copy        a copy of it, this test's to change
  trained_run      a run with helpers.SMOKE (1 epoch x 2 batches) on the demo (read-only: copy it to change it)
  tiny_run         a run of 2 epochs x 2 batches, trained with --run (read-only)
  alone_runs       seeds 42 and 43 with helpers.FAST (3 epochs x 15 batches), each trained alone
                   (--no-stack): their method folder, and what the command said (stderr.txt beside)
  reference_run    alone_runs' seed 42, what determinism tests compare with
  stacked_runs     seeds 42 and 43 with helpers.FAST, trained as one stack: their method folder
The read-only ones are made once per test session, also under pytest-xdist: the first worker to
need one builds it under the session's temporary root, the others wait for it (a file lock)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clipclap_cli.cli import run
from clipclap_cli.plugins.manager import make_plugin_manager
from helpers import FAST, FAST_RUN, SMOKE, tree_digest  # noqa: F401  (tree_digest: re-exported for older imports)
from released_tree import BENCHMARKS, write_released_tree  # noqa: F401  (re-exported for tests)
from shared_material import missing

# Hermetic: the tool reads settings from the environment (a default store, checkpoints, which
# plugins to load, an extraction shard from a launcher's RANK/WORLD_SIZE). A researcher's shell
# may set any of them, so the tests start without them, and the tool reads the same benchmarks
# as the tests do. Subprocesses inherit this environment.
for _name in [n for n in os.environ if n.startswith("CLIPCLAP_") and n != "CLIPCLAP_SHARED"] + ["RANK", "WORLD_SIZE"]:
    os.environ.pop(_name, None)
os.environ["CLIPCLAP_BENCHMARKS"] = str(BENCHMARKS)

# Under pytest-xdist (`make test`) each worker, and every process it starts, computes with one CPU
# thread: workers as many as cores do not fight over them. Every comparison of numbers is between
# runs of one session, so all sides have the same count (a run records it, and the tests that
# vary it say so). Set before torch is loaded; torch's own setting too, should a plugin load it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


#: what the forkserver of a test process imports before it forks workers: the union of what
#: `train --jobs` and `extract --workers` ask of it (see `_worker_server`)
WORKER_PRELOAD = ["__main__", "torch", "torch._dynamo", "clipclap_cli.train.jobs", "clipclap_cli.extract.extraction"]


@pytest.fixture(scope="session", autouse=True)
def _worker_server():
    """multiprocessing's forkserver is one per process (`clipclap_cli.processes.worker_context`),
    started by the first command that asks for workers, with that command's imports. A `clipclap`
    process runs one command, so its workers start with what they need; a test process runs many,
    and where `extract --workers` came first (it preloads nothing), each later `train --jobs`
    worker imported torch's compiler stack and the trainer itself, some 3 s of CPU apiece. Started
    here at the session's start, in the background, with what both commands preload."""
    import multiprocessing
    import multiprocessing.forkserver

    if "forkserver" in multiprocessing.get_all_start_methods():
        multiprocessing.get_context("forkserver").set_forkserver_preload(WORKER_PRELOAD)
        multiprocessing.forkserver.ensure_running()


def pytest_sessionstart(session):
    """Without the goldens and benchmarks most tests cannot run: say so once, not 200 times."""
    reason = missing()
    if reason:
        pytest.exit(reason, returncode=pytest.ExitCode.USAGE_ERROR)


# ---------------------------------------------------------------- no JSON file holds NaN or infinity
_BASETEMP: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _session_basetemp(tmp_path_factory):
    """This session's temporary folder, where every test writes: `pytest_sessionfinish` walks it."""
    _BASETEMP.append(tmp_path_factory.getbasetemp())


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonFinite(name)


def non_finite_json(path: Path) -> str | None:
    """Where `path` (a .json file, or a .jsonl file line by line) holds NaN or Infinity, which only
    Python's lenient parser reads: `line N: NaN`, or None. A file that is not JSON at all (cut
    short by a test that damages files on purpose) is not this check's business."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    docs = list(enumerate(text.splitlines(), 1)) if path.suffix == ".jsonl" else [(0, text)]
    for line, doc in docs:
        if not doc.strip():
            continue
        try:
            json.loads(doc, parse_constant=_refuse_constant)
        except _NonFinite as e:
            return f"line {line}: {e}" if line else str(e)
        except ValueError:
            continue
    return None


#: A test that plants NaN in a JSON file on purpose (to see it refused or left out) puts it under
#: a folder whose name starts with this: the session's walk leaves such folders alone.
DAMAGED = "damaged"


def non_finite_json_files(root: Path) -> list[str]:
    """Every *.json and *.jsonl file under `root` that holds NaN or Infinity, with where; files
    under a folder named `damaged...` (planted on purpose, `DAMAGED`) are left alone."""
    found = []
    for path in sorted(root.rglob("*.json*")):
        if any(part.startswith(DAMAGED) for part in path.relative_to(root).parts[:-1]):
            continue
        if path.suffix in (".json", ".jsonl") and path.is_file() and not path.is_symlink():
            where = non_finite_json(path)
            if where:
                found.append(f"{path} ({where})")
    return found


def pytest_collection_modifyitems(config, items):
    """The slow-marked tests first (stable: the others keep their order). Under pytest-xdist the
    workers then finish together, instead of one worker training the suite's longest tests alone
    at the end; no test depends on the order (each one makes or copies what it changes)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session, exitstatus):
    """No JSON file clipclap writes may hold NaN or infinity (issue 39): after the tests, every
    *.json and *.jsonl file under this session's temporary folder is read strictly, and one that
    parses only with NaN/Infinity fails the session, named. Under pytest-xdist the controller
    walks the folder of all the workers' folders, once they have finished (a worker's own
    verdict would not reach the exit status)."""
    if hasattr(session.config, "workerinput"):
        return
    if session.config.pluginmanager.has_plugin("dsession"):  # the xdist controller: it ran no test itself
        root = session.config._tmp_path_factory.getbasetemp()
    elif _BASETEMP:
        root = _BASETEMP[0]
    else:
        return
    if not root.exists():
        return
    bad = non_finite_json_files(root)
    if bad:
        title = "JSON files holding NaN or Infinity (not JSON: clipclap must refuse to write them)"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write("\n")
            reporter.write_sep("=", title, red=True)
            for line in bad:
                reporter.write_line(line, red=True)
        else:
            print(title, *bad, sep="\n", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def pm():
    """Built-ins only, fresh per test."""
    return make_plugin_manager(entrypoints=False)


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self):
        return f"CliResult({self.exit_code}, stdout={self.stdout[-500:]!r}, stderr={self.stderr[-500:]!r})"


@pytest.fixture
def cli(pm, capsys):
    """Run `clipclap ARGS` in-process with the test's plugin manager; returns exit code and output."""

    def invoke(*args: str, manager=None) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in args], manager or pm)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


# ---------------------------------------------------------------- made once per session, shared
def _session_root(tmp_path_factory) -> Path:
    """The folder every process of this session writes under: the basetemp, or under
    pytest-xdist the folder that holds each worker's basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `name` under the session's root, made by `make(folder)` in the first process
    that asks (the others wait on a file lock and reuse it; a failed `make` leaves nothing)."""
    root = _session_root(tmp_path_factory) / "made-once"
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            make(folder)
            done.touch()
    return folder


def _train(*args: str) -> None:
    assert run(["train", "demo", *map(str, args)], make_plugin_manager(entrypoints=False)) == 0


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """The demo benchmark, generated once per session (read-only for tests)."""
    def make(folder):
        assert run(["demo", "--no-train", "--store", str(folder / "store.zarr")],
                   make_plugin_manager(entrypoints=False)) == 0

    return made_once(tmp_path_factory, "demo", make) / "store.zarr"


@pytest.fixture
def demo_copy(demo_store, tmp_path):
    """A copy of the demo store, this test's to change or damage."""
    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    return store


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_store):
    """One short real run on the demo benchmark (read-only: tests copy it to edit its results)."""
    root = made_once(tmp_path_factory, "report",
                     lambda folder: _train("--store", demo_store, "--runs-dir", folder / "runs", *SMOKE))
    [path] = [p.parent for p in (root / "runs").rglob("results.json")]
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_store):
    """One uninterrupted run of 2 epochs x 2 batches, trained with --run (read-only)."""
    root = made_once(tmp_path_factory, "tiny",
                     lambda folder: _train("--store", demo_store, "--run", folder / "run", "--epochs", "2",
                                           "--batches-per-epoch", "2"))
    return root / "run"


@pytest.fixture(scope="session")
def alone_runs(tmp_path_factory, demo_store):
    """Seeds 42 and 43, uninterrupted (FAST), each trained alone (`--no-stack`): the folder of
    their method; `stderr.txt` in the fixture's folder holds what the command printed there
    (read-only: copy a run to change it)."""
    def make(folder):
        folder.mkdir()
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                _train("--store", demo_store, "--runs-dir", folder / "runs", *FAST, "--seeds", "2", "--no-stack")
        except BaseException:
            sys.stderr.write(said.getvalue())  # what went wrong, where pytest shows it
            raise
        (folder / "stderr.txt").write_text(said.getvalue())

    return made_once(tmp_path_factory, "alone", make) / "runs" / "demo" / FAST_RUN


@pytest.fixture(scope="session")
def reference_run(alone_runs):
    """One uninterrupted run (seed 42, FAST) that resumed, repeated and moved runs are compared
    with byte for byte (read-only: copy it to change it). A run trained alone has the same bytes
    whatever else the command trained (each run seeds its own generators)."""
    return alone_runs / "seed42"


@pytest.fixture(scope="session")
def stacked_runs(tmp_path_factory, demo_store):
    """Seeds 42 and 43, uninterrupted (FAST), as one stack: the folder of their method."""
    runs = made_once(tmp_path_factory, "stacked",
                     lambda folder: _train("--store", demo_store, "--runs-dir", folder, *FAST, "--seeds", "2"))
    return runs / "demo" / FAST_RUN
