from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from clipclap_cli.cli import run
from clipclap_cli.plugins.manager import make_plugin_manager
from released_tree import BENCHMARKS, write_released_tree  # noqa: F401  (re-exported for tests)
from shared_material import missing

# Hermetic: the tool reads settings from the environment (a default store, checkpoints, which
# plugins to load, an extraction shard from a launcher's RANK/WORLD_SIZE). A researcher's shell
# may set any of them, so the tests start without them, and the tool reads the same benchmarks
# as the tests do. Subprocesses inherit this environment.
for _name in [n for n in os.environ if n.startswith("CLIPCLAP_") and n != "CLIPCLAP_SHARED"] + ["RANK", "WORLD_SIZE"]:
    os.environ.pop(_name, None)
os.environ["CLIPCLAP_BENCHMARKS"] = str(BENCHMARKS)


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


def pytest_sessionfinish(session, exitstatus):
    """No JSON file clipclap writes may hold NaN or infinity (issue 39): after the tests, every
    *.json and *.jsonl file under this session's temporary folder is read strictly, and one that
    parses only with NaN/Infinity fails the session, named."""
    if not _BASETEMP or not _BASETEMP[0].exists():
        return
    bad = non_finite_json_files(_BASETEMP[0])
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


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under `path` (the store's bytes, to prove nothing changed)."""
    path = Path(path)
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """The demo benchmark, generated once per session (read-only for tests)."""
    store = tmp_path_factory.mktemp("demo") / "store.zarr"
    assert run(["demo", "--no-train", "--store", str(store)], make_plugin_manager(entrypoints=False)) == 0
    return store


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_store):
    """One short real run on the demo benchmark (read-only: tests copy it to edit its results)."""
    root = tmp_path_factory.mktemp("report")
    assert run(["train", "demo", "--store", str(demo_store), "--runs-dir", str(root / "runs"), "--epochs", "1",
                "--batches-per-epoch", "2"], make_plugin_manager(entrypoints=False)) == 0
    [path] = [p.parent for p in (root / "runs").rglob("results.json")]
    return path
