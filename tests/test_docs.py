"""The docs' command lines are real: every `clipclap ...` in the README, docs/ and the example
plugin's README names commands and options the CLI has (so a renamed option cannot leave the
docs behind)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from clipclap_cli.cli import make_app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "examples" / "clipclap-example-plugin" / "README.md"]


def command_lines(text: str) -> list[str]:
    """`clipclap ...` command lines: those of code blocks (continuation lines joined, comments
    dropped, `a && b` taken apart) and inline code spans."""
    candidates = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        candidates += [line.split(" #", 1)[0] for line in block.replace("\\\n", " ").splitlines()]
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    candidates += re.findall(r"`([^`\n]+)`", outside)
    commands = [" ".join(part.split()) for line in candidates for part in re.split(r"\s(?:&&|\|\||;|&)\s", line)]
    return [command for command in commands if command.startswith("clipclap ")]


def check(root, line: str) -> str | None:
    """What is wrong with `line` for the CLI `root` (Typer's command tree), or None. The docs'
    shorthands count: `datasets list|kinds|show` names three commands, `--stage1/--stage2` two
    options."""
    return _check(root, shlex.split(line)[1:], ["clipclap"])


def _check(command, words: list[str], path: list[str]) -> str | None:
    if hasattr(command, "commands") and words and not words[0].startswith("-"):
        for name in words[0].split("|"):
            sub = command.commands.get(name)
            if sub is None:
                return f"{' '.join(path)} has no command {name!r}"
            if problem := _check(sub, words[1:], [*path, name]):
                return problem
        return None
    options = {name for p in command.params if p.param_type_name == "option" for name in p.opts + p.secondary_opts}
    options.add("--help")
    for word in words:
        for name in word.split("=", 1)[0].split("/"):
            if re.fullmatch(r"--?[a-zA-Z][\w-]*", name) and name not in options:
                return f"{' '.join(path)} has no option {name}"
    return None


@pytest.fixture(scope="module")
def root(pm_module):
    return typer.main.get_command(make_app(pm_module))


@pytest.fixture(scope="module")
def pm_module():
    from clipclap_cli.plugins import make_plugin_manager

    return make_plugin_manager(entrypoints=False)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_command_lines_name_real_commands_and_options(root, doc):
    lines = command_lines(doc.read_text())
    problems = [f"{line!r}: {problem}" for line in lines if (problem := check(root, line))]
    assert not problems, "\n".join(problems)


def test_the_readme_s_command_lines_are_found():
    lines = command_lines((ROOT / "README.md").read_text())
    assert "clipclap import ucf /data/UCF" in lines  # in a code block, comment dropped
    assert "clipclap train --stage 1" in lines  # an inline span
    assert any(line.startswith("clipclap extract mine --videos /data/mine -e ") for line in lines)  # joined
    assert "clipclap split mine --seen 40 --unseen 10 --seed 0 --split drawn" in lines
    assert len(lines) > 30


def test_the_check_finds_a_wrong_command_or_option(root):
    assert check(root, "clipclap train ucf --stage all --seed 3 -p dropout=0.2") is None
    assert check(root, "clipclap datasets show ucf") is None
    assert check(root, "clipclap trian ucf") == "clipclap has no command 'trian'"
    assert check(root, "clipclap datasets shwo ucf") == "clipclap datasets has no command 'shwo'"
    assert check(root, "clipclap train ucf --stages all") == "clipclap train has no option --stages"
    assert check(root, "clipclap report --format=csv --plot DIR") == "clipclap report has no option --plot"
    assert check(root, "clipclap datasets list|kinds|shows") == "clipclap datasets has no command 'shows'"
    assert check(root, "clipclap evaluate ucf --stage1/--stage3") == "clipclap evaluate has no option --stage3"
