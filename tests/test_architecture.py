"""The code's layout is what docs/architecture.md says: every module is on its map, its layer
table is the layers checked here, imports run one way (from the command line down to the
store), plugins (the built-ins too) import only the public face, and the wheel lists every
package."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"base": 0, "plugins": 1, "store": 2, "data": 3, "evaluate": 4, "runs": 5, "train": 6, "extract": 6,
          "report": 6, "predict": 6, "python_api": 7, "cli": 8}
"As docs/architecture.md's table; `base` is the top-level modules of clipclap_cli"
PUBLIC_FACE = ("clipclap_cli", "clipclap_cli.api")
"What plugins import, the built-ins too: the package re-exports api's names (docs/plugins.md)"


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
            if theirs is None or theirs == mine:
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


def _layer_table() -> dict[str, int]:
    """docs/architecture.md's layer table: folder (`base` for the top level) -> layer."""
    text = (REPO / "docs" / "architecture.md").read_text()
    table = {}
    for number, folders in re.findall(r"^\| (\d+) \| (.+?) \| ", text, re.M):
        for folder in re.findall(r"`(\w+)/`", folders) or (["base"] if folders == "top level" else []):
            table[folder] = int(number)
    return table


def test_the_layer_table_is_the_layers_checked():
    assert _layer_table() == LAYERS


def test_the_built_in_plugins_import_only_the_public_face():
    """What docs/plugins.md tells plugin authors, the built-ins do: of clipclap, they import
    `clipclap_cli` and `clipclap_cli.api` only (and their own modules, `clipclap_plugins`)."""
    from clipclap_cli import api

    problems = []
    for path in sorted((REPO / "plugins").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] if node.module != "clipclap_cli" else [  # not `from clipclap_cli import errors`
                    f"clipclap_cli.{a.name}" for a in node.names if a.name not in (*api.__all__, "__version__")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            problems += [f"{path.relative_to(REPO)}:{node.lineno}: {name}" for name in names
                         if name.split(".")[0] == "clipclap_cli" and name not in PUBLIC_FACE]
    assert problems == [], "built-in plugins importing internal modules:\n" + "\n".join(problems)


def test_the_public_face_is_one_list_and_every_name_resolves():
    """`clipclap_cli` and `clipclap_cli.api` hold the same names, the same objects; each name api
    re-exports lazily comes from the module it names."""
    import importlib

    import clipclap_cli
    from clipclap_cli import api

    assert sorted(clipclap_cli.__all__) == sorted([*api.__all__, "__version__"])
    assert len(set(api.__all__)) == len(api.__all__)
    for name in api.__all__:
        assert getattr(clipclap_cli, name) is getattr(api, name), name
    for name, module in api._ELSEWHERE.items():
        assert getattr(api, name) is getattr(importlib.import_module(module), name), name


def test_the_public_face_imports_only_the_base_when_imported():
    """api.py is layer 0 for the core (the contracts' definitions) and the face for plugins: it
    imports nothing above the base when it is imported; the rest comes on first use."""
    imported = [m for m, _ in _imports(REPO / "clipclap_cli" / "api.py") if m.startswith("clipclap_cli")]
    assert [m for m in imported if _layer(m) not in ("base", None)] == []
    code = ("import sys, clipclap_cli, clipclap_cli.api; "
            "print(sorted(m for m in sys.modules if m.startswith(('clipclap_cli.', 'torch', 'pluggy'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "['clipclap_cli.api']", loaded


def test_what_the_architecture_page_says_of_the_public_face_holds():
    text = " ".join((REPO / "docs" / "architecture.md").read_text().split())
    assert "Plugins, the built-ins too, import from `clipclap_cli.api` only" in text
    assert "`clipclap_cli` re-exports the same names" in text
    assert "(tests/test_architecture.py checks this" in text
