"""The built wheel works outside this repository (issue "A package that works outside this
repository"): it is installed into a fresh virtual environment in a temporary folder and run
from there, with the benchmarks' data it ships and nothing of this clone.

Installing torch and the other dependencies into each test's environment would download
gigabytes, so the fresh environment sees them through a folder of links to this project's
virtual environment, from which clipclap itself (its editable install) is left out. Leaving
out more gives an environment without an extra: the commands that need it must say which to
install, in one line, and the others must work.

The `clipclap` console script and `import clipclap_cli` run as new interpreters of that
environment. The other commands are children of a server of the same interpreter that has
imported torch, numpy and zarr, the core dependencies every install has (tests/prestarted.py):
each imports clipclap, from the wheel, and whatever else it needs, from the dependencies the test
leaves, itself, without paying again for torch's start (some 5 s of CPU a command, 25 commands).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from prestarted import Prestarted
from released_tree import write_released_tree
from shared_material import BENCHMARKS

# one pytest-xdist worker runs them all: the tests take dependencies away from one shared environment
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]

REPO = Path(__file__).resolve().parents[1]
EXTRACT = ("av", "open_clip", "open_clip_torch", "transformers")
PLOTS = ("matplotlib",)
INSTALLS = {"core": EXTRACT + PLOTS + ("PIL", "pillow"),  # pillow comes with either extra
            "core+plots": EXTRACT, "core+extract": PLOTS}
"What each install lacks, as names in site-packages (modules and their .dist-info prefixes)"
#: what the environment's command server imports before it forks: core dependencies only
CORE_PRELOAD = ("torch", "torch._dynamo", "torch.optim", "numpy", "zarr")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # from a copy of the sources: a build/ folder left in the clone would add its stale files to the wheel
    source = tmp_path_factory.mktemp("source") / "clipclap"
    top = {".git", ".venv", "build", "dist", "demo-output", "runs", ".hypothesis", ".pytest_cache", "examples"}
    anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", "*.zarr")
    shutil.copytree(REPO, source, ignore=lambda folder, names: set(anywhere(folder, names)) | (
        top & set(names) if Path(folder) == REPO else set()))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(out), str(source)], check=True, capture_output=True)
    [built] = out.glob("clipclap-*.whl")
    return built


def _dependencies_view(folder: Path, without: tuple[str, ...]) -> Path:
    """Links to this environment's site-packages, less clipclap itself and the `without` names."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    [packages] = [Path(p) for p in site.getsitepackages() if Path(p).name == "site-packages"]
    for entry in packages.iterdir():
        name = entry.name
        top = name.split("-")[0].split(".")[0]
        if name.startswith(("__editable__", "clipclap", "_clipclap")) or name.endswith(".pth"):
            continue  # clipclap comes from the wheel only; .pth files belong to this environment
        if top in without or top.lower() in {w.lower() for w in without}:
            continue
        (folder / name).symlink_to(entry)
    return folder


def _environment(root: Path, wheel: Path) -> dict[str, str]:
    """A fresh virtual environment under `root` with the wheel installed; returns the process
    environment to run its `clipclap` in (no variable of this repository's tests)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
                   check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPCLAP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(root)
    _use_dependencies(env, root / "deps", ())
    return env


def _use_dependencies(env: dict[str, str], folder: Path, without: tuple[str, ...]) -> None:
    """Give the environment `env` this one's dependencies, less `without` (always in the same
    `folder`: the command server's interpreter read its path as it started)."""
    python = Path(env["PATH"].split(os.pathsep)[0]) / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = _dependencies_view(folder, without)
    Path(purelib, "zz_dependencies.pth").write_text(f"{deps}\n")  # after the wheel's own files


def _console_script(env: dict, cwd: Path, *args) -> subprocess.CompletedProcess:
    """The environment's `clipclap` script, as a new process."""
    return subprocess.run(["clipclap", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory, wheel):
    """The fresh environment's folder, process environment and command server."""
    root = tmp_path_factory.mktemp("fresh")
    env = _environment(root, wheel)
    with Prestarted(root / "venv" / "bin" / "python", env, CORE_PRELOAD) as server:
        yield root, env, server


@pytest.fixture
def wheel_env(wheel_venv):
    """The fresh environment with every dependency (a test may take some away for itself)."""
    root, env, _ = wheel_venv
    yield root, env
    _use_dependencies(env, root / "deps", ())


@pytest.fixture
def run_there(wheel_venv):
    """`clipclap ARGS` in the fresh environment (`run_there(env, cwd, *args)`), a child of its server."""
    _, _, server = wheel_venv
    return lambda env, cwd, *args: server.run([str(a) for a in args], env=env, cwd=cwd, timeout=600)


def test_the_wheel_holds_the_benchmarks_data_unchanged(wheel):
    """datasets.toml, and per benchmark the prompts, class lists, class-name mappings and both
    protocol splits (class lists and video lists), equal to the public benchmark files."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "clipclap_cli/resources/datasets.toml" in names
        shipped = {n.removeprefix("clipclap_cli/resources/benchmarks/"): n for n in names
                   if n.startswith("clipclap_cli/resources/benchmarks/") and n.count("/") > 3}
        public = [p.relative_to(BENCHMARKS).as_posix() for p in BENCHMARKS.rglob("*")
                  if p.is_file() and p.parent != BENCHMARKS]
        assert public
        for rel in public:
            packed = rel + ".gz" if rel.endswith(".csv") and "_split/" in rel else rel
            assert packed in shipped, f"{rel} does not ship"
            data = zf.read(shipped[packed])
            assert (gzip.decompress(data) if packed.endswith(".gz") else data) == (BENCHMARKS / rel).read_bytes(), rel


def test_the_wheel_ships_the_docs_and_docs_prints_them(wheel, wheel_env, run_there, tmp_path):
    """clipclap has no web site: every page of docs/ ships in the wheel, unchanged, and
    `clipclap docs plugins` (the page messages cite) prints it outside the repository."""
    with zipfile.ZipFile(wheel) as zf:
        for page in sorted((REPO / "docs").glob("*.md")):
            assert zf.read(f"clipclap_cli/docs/{page.name}") == page.read_bytes(), page.name
    _, env = wheel_env
    r = run_there(env, tmp_path, "docs", "plugins")
    assert r.returncode == 0 and r.stdout == (REPO / "docs" / "plugins.md").read_text(encoding="utf-8"), r.stderr
    listed = run_there(env, tmp_path, "docs").stdout
    assert all(f"{page.stem} " in listed for page in (REPO / "docs").glob("*.md")), listed


def test_the_installed_wheel_works_outside_the_repository(wheel_env, run_there, tmp_path):
    root, env = wheel_env
    where = _console_script(env, tmp_path, "--version")
    assert where.returncode == 0, where.stderr
    python = Path(env["PATH"].split(os.pathsep)[0]) / "python"
    origin = subprocess.run([python, "-c", "import clipclap_cli; print(clipclap_cli.__file__)"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(origin).is_relative_to(root / "venv"), origin  # the wheel's copy, not this clone's
    listed = run_there(env, tmp_path, "datasets", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {d["name"] for d in json.loads(listed.stdout)} >= {"ucf", "activitynet", "vggsound", "demo"}
    # the released layout of UCF imports, and its split comes out as the benchmark's
    tree = tmp_path / "ucf-data"
    written = write_released_tree(tree, "UCF", "ucf", "ucf_clip_class_names.csv", "clip_class_name",
                                  max_per_class=2)
    store = tmp_path / "s.zarr"
    r = run_there(env, tmp_path, "import", "ucf", tree, "--store", store)
    assert r.returncode == 0, r.stderr
    info = json.loads(run_there(env, tmp_path, "datasets", "show", "ucf", "--json", "--store", store).stdout)
    videos = sum(len(names) for part, by_class in written.items() if part != "text"
                 for names, _, _ in by_class.values())
    assert info["videos"] == videos, info
    # and the demo runs end to end (a short schedule) with a results table
    r = run_there(env, tmp_path, "demo", "--store", tmp_path / "demo.zarr", "--epochs", "1",
                  "--batches-per-epoch", "5", "--seeds", "1")
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "runs").rglob("results.json")), r.stderr


def test_embed_reads_the_prompts_the_wheel_ships(wheel_env, run_there, tmp_path):
    """`embed` fills the shipped prompt templates (`{benchmarks}` is the package's copy): all of
    UCF's CLIP templates, as the public prompts file lists them."""
    _, env = wheel_env
    store = tmp_path / "s.zarr"
    assert run_there(env, tmp_path, "demo", "--store", store, "--no-train").returncode == 0
    r = run_there(env, tmp_path, "embed", "demo", "--store", store, "--encoder", "clip",
                  "-e", "model=clipclap-tiny-clip")  # random weights: the templates are what is checked
    templates = tomllib.loads((BENCHMARKS / "UCF" / "prompts.toml").read_text())["clip_text"]["templates"]
    assert r.returncode == 0 and f"({len(templates)} templates)" in r.stderr, r.stderr


@pytest.mark.parametrize("install", sorted(INSTALLS))
def test_a_missing_extra_is_named_and_the_core_works(wheel_env, run_there, tmp_path, install):
    root, env = wheel_env
    _use_dependencies(env, root / "deps", INSTALLS[install])
    assert _console_script(env, tmp_path, "--version").returncode == 0  # a new interpreter starts without them
    store = tmp_path / "s.zarr"
    r = run_there(env, tmp_path, "demo", "--store", store, "--epochs", "1", "--batches-per-epoch", "5", "--seeds", "1")
    assert r.returncode == 0, r.stderr  # the core install generates, trains, evaluates and reports
    [run] = [p.parent for p in (tmp_path / "runs").rglob("clipclap*/seed42/results.json")]
    assert run_there(env, tmp_path, "evaluate", run).returncode == 0
    assert run_there(env, tmp_path, "report", tmp_path / "runs").returncode == 0
    failing = []
    if "extract" not in install:
        videos = tmp_path / "videos" / "a"
        videos.mkdir(parents=True)
        (videos / "x.mp4").write_bytes(b"not decoded: the command stops before")
        user = tmp_path / "mine.toml"
        user.write_text(f'[datasets.mine]\nkind = "video-folder"\nvideos = "{videos.parent}"\n'
                        'dims = { video = 512, audio = 1024, clip = 512, clap = 1024 }\n')
        failing += [(("extract", "mine", "--datasets", user, "--store", tmp_path / "x.zarr"), "extract"),
                    (("embed", "demo", "--store", store, "--encoder", "clip", "-e", "model=clipclap-tiny-clip"),
                     "extract")]
    if "plots" not in install:
        failing += [(("report", tmp_path / "runs", "--plots", tmp_path / "plots"), "plots")]
    else:
        assert run_there(env, tmp_path, "report", tmp_path / "runs", "--plots", tmp_path / "plots").returncode == 0
    for command, extra in failing:
        r = run_there(env, tmp_path, *command)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, (command, r.stderr)
        assert lines[0].endswith(f"pip install 'clipclap[{extra}]'"), (command, r.stderr)


def _declared() -> dict[str, set[str]]:
    """The distributions pyproject.toml declares: the core's, and each extra's."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements):
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    return {"core": names(project["dependencies"])} | {
        extra: names(reqs) for extra, reqs in project["optional-dependencies"].items()}


def test_every_import_is_declared_and_the_core_imports_only_the_core():
    """Every third-party module the package imports comes from a declared distribution; a module
    imported when a file loads (not inside a function) must be a core dependency, since `clipclap
    --help` loads those files on any install."""
    import ast
    from importlib.metadata import packages_distributions

    provides = {m: {d.lower().replace("_", "-") for d in ds} for m, ds in packages_distributions().items()}
    declared = _declared()
    anywhere = set().union(*declared.values())
    problems = []
    for path in sorted([*REPO.joinpath("clipclap_cli").rglob("*.py"), *REPO.joinpath("plugins").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        at_load = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "need"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                modules = [node.args[0].value]  # extras.need("module", ...): an optional import
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("clipclap_cli", "clipclap_plugins"):
                    continue
                dists = provides.get(top)
                where = f"{path.relative_to(REPO)}:{node.lineno} imports {module}"
                if not dists:
                    problems.append(f"{where}: no installed distribution provides it")
                elif not dists & anywhere:
                    problems.append(f"{where}: {sorted(dists)} is not declared in pyproject.toml")
                elif id(node) in at_load and not dists & declared["core"]:
                    problems.append(f"{where}: at load time, but {sorted(dists)} is not a core dependency")
    assert not problems, "\n".join(problems)
