"""The code's layout is what docs/architecture.md says: every module is on its map, imports run
one way (from the command line down to the store), and the wheel lists every package."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"base": 0, "plugins": 1, "store": 2, "data": 3, "evaluate": 4, "runs": 5, "train": 6, "extract": 6,
          "report": 6, "cli": 7}
"As docs/architecture.md's table; `base` is the top-level modules of clipclap_cli"
PUBLIC_FACADE = ("clipclap_cli.api", "clipclap_cli.plugins")
"api.py re-exports the fusion-head contract lazily: the one import allowed to go up a layer"


def _holds_code(path: Path) -> bool:
    """Whether a file holds more than a docstring (a package's __init__.py may hold only one)."""
    body = ast.parse(path.read_text()).body
    return len(body) > (1 if body and isinstance(body[0], ast.Expr) else 0)


def _modules() -> list[Path]:
    """Every module of the package and of the built-in plugins, but __init__.py files that hold
    only a docstring."""
    found = [*(REPO / "clipclap_cli").rglob("*.py"), *(REPO / "plugins").glob("*.py")]
    return sorted(p for p in found if "__pycache__" not in p.parts and (p.name != "__init__.py" or _holds_code(p)))


def test_the_module_map_lists_every_module_and_no_other():
    text = (REPO / "docs" / "architecture.md").read_text()
    mapped = set(re.findall(r"^\| `((?:clipclap_cli|plugins)/[\w/]+\.py)` \|", text, re.M))
    actual = {p.relative_to(REPO).as_posix() for p in _modules()}
    assert sorted(actual - mapped) == [], "modules missing from docs/architecture.md"
    assert sorted(mapped - actual) == [], "docs/architecture.md lists modules that do not exist"


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "clipclap_cli":
        return None
    if len(parts) == 1 or parts[1] in ("__init__", "__main__", "testing"):
        return None  # the package itself and the contract kit: public API, above everything
    return parts[1] if parts[1] in LAYERS else "base"


def _imports(path: Path):
    """(module imported, line) of every import that runs (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for node in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for alias in node.names:  # `from clipclap_cli.store import locks`
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def test_imports_run_one_way_from_the_cli_down_to_the_store():
    problems = []
    for path in _modules():
        rel = path.relative_to(REPO)
        if rel.parts[0] != "clipclap_cli":
            continue
        module = ".".join(rel.with_suffix("").parts)
        mine = _layer(module)
        if mine is None:
            continue
        for imported, line in _imports(path):
            theirs = _layer(imported)
            facade = module == PUBLIC_FACADE[0] and imported.startswith(PUBLIC_FACADE[1])
            if theirs is None or theirs == mine or facade:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                problems.append(f"{rel}:{line}: {mine} imports {imported} ({theirs})")
    assert not problems, "\n".join(problems)


def test_relative_imports_are_not_used():
    """Every import names its module in full, so that a module's room is visible where it is used."""
    relative = [f"{p.relative_to(REPO)}:{n.lineno}" for p in _modules() for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.ImportFrom) and n.level > 0 and p.parts[-2] != "plugins"]
    assert relative == []


def test_the_wheel_lists_every_package():
    """setuptools is given the packages by name: a folder missing from the list would be missing
    from the wheel (tests/test_wheel.py installs it and would fail later, less clearly)."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "clipclap_cli").rglob("__init__.py")}
    assert folders - listed == set()
