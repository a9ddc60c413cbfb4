"""`clipclap docs [TOPIC]` (issue 43 item 7): clipclap has no web site, so the pages of docs/ ship
in the package and this command prints them; every message that cites a page names it. The
wheel's copy is checked in test_wheel.py; here the clone's (an editable install)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))


def test_docs_prints_a_page_whole(cli):
    r = cli("docs", "plugins")
    assert r.exit_code == 0 and r.stdout == (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8"), r
    assert cli("docs", "docs/plugins.md").stdout == r.stdout  # the page as a message or a link names it


def test_docs_without_a_topic_lists_every_page_with_its_title(cli):
    r = cli("docs")
    assert r.exit_code == 0, r
    listed = dict(re.findall(r"^(\S+) +(.+)$", r.stdout, flags=re.M))
    for page in PAGES:
        first = next(line for line in page.read_text().splitlines() if line.startswith("# "))
        assert listed[page.stem] == first[2:], page.name


def test_an_unknown_page_is_one_line_with_the_closest_and_every_page(cli):
    r = cli("docs", "plugin")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and not r.stdout, r
    assert "unknown documentation page 'plugin'. Did you mean 'plugins'?" in lines[0]
    assert all(p.stem in lines[0] for p in PAGES) and lines[0].endswith("(see `clipclap docs`)")


def test_messages_cite_pages_by_the_command_not_a_path_a_wheel_lacks():
    """No message or --help text of the package points to docs/NAME.md (a pip user has no such
    file); comments and docstrings may, for the repository's readers."""
    import ast

    problems = []
    for path in sorted([*ROOT.joinpath("clipclap_cli").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        problems += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                     and re.search(r"docs/[\w-]+\.md", node.value)]
    assert not problems, "\n".join(problems)
