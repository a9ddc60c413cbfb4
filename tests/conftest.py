from __future__ import annotations

import hashlib
import os
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
