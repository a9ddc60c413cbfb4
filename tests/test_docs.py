"""The docs are true: the README's and docs/'s command lines are real, the examples marked
`<!-- test: run -->` run as written, and every relative link leads somewhere.

- Every `clipclap` command in a `bash`, `sh` or `console` code block of README.md, docs/*.md and
  the example plugin's README is parsed by the real CLI (click's `make_context`: parsed, never
  invoked): the command exists, each option exists for it, its values convert and the
  arguments fit. Inline code spans and other code blocks (transcripts) are checked for command
  and option names only, since they use shorthands (`datasets list|kinds|show`).
- A block marked `<!-- test: run -->` on the line before its fence runs for real, in-process and
  offline: a document's marked blocks run in order in one empty folder, each command exiting 0.
- Every relative link points at a file that exists (its `#fragment` at a heading there), and
  the README's "Documentation" list links every page of docs/.
"""

from __future__ import annotations

import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer

from clipclap_cli.cli import make_app
from clipclap_cli.errors import ClipclapError
from clipclap_cli.plugins.manager import make_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "clipclap-example-plugin" / "README.md"]
SHELLS = {"bash", "sh", "console"}
RUN_MARK = "<!-- test: run -->"
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- reading the markdown ------------------------------------------------------------------------

@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, counted from 1
    lang: str
    lines: list[str]
    run: bool  # marked <!-- test: run -->


def blocks(text: str, doc: Path = README) -> list[Block]:
    """The fenced code blocks of a markdown text (indented ones too, as in a numbered list)."""
    found, previous, lines, i = [], "", text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence, lang = match.groups()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:j]]
        found.append(Block(doc, i + 1, lang.lower(), body, previous == RUN_MARK))
        previous, i = "", j + 1
    return found


def prose(text: str) -> str:
    """The text outside fenced code blocks (a block's lines blanked, so line numbers hold)."""
    lines = text.splitlines()
    for block in blocks(text):
        for k in range(block.line - 1, min(block.line + len(block.lines) + 1, len(lines))):
            lines[k] = ""
    return "\n".join(lines)


# --- shell lines ---------------------------------------------------------------------------------

@dataclass
class Command:
    where: str  # FILE:LINE
    text: str  # the command as written (continuations joined)
    args: list[str] | None  # clipclap's arguments, None when the command is not clipclap
    env: dict[str, str] = field(default_factory=dict)


def strip_comment(line: str) -> str:
    """`line` without its shell comment: a `#` that starts a word, outside quotes."""
    quote = None
    for k, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """(line number, command line) of a shell block: continuation lines joined, comments dropped;
    in a `console` block only the lines after a `$ ` prompt."""
    out, pending, start = [], None, 0
    for k, raw in enumerate(block.lines):
        line = raw
        if pending is None:
            if block.lang == "console":
                if not line.lstrip().startswith("$ "):
                    continue
                line = line.lstrip()[2:]
            start, pending = block.line + 1 + k, ""
        elif block.lang == "console" and line.lstrip().startswith("> "):
            line = line.lstrip()[2:]
        line = strip_comment(line).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, (pending + line).strip()))
        pending = None
    if pending is not None:
        out.append((start, pending.strip()))
    return [(n, line) for n, line in out if line]


SEPARATORS = {"&&", "||", ";", "&", "|", "(", ")", ";;"}
REDIRECTS = {">", ">>", "<", "&>", ">&", "<<"}
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, as words (`a && b`, `a | b`, `a &` taken apart;
    redirections dropped; `<RUN>`-style placeholders read as RUN)."""
    line = re.sub(r"<([A-Za-z][\w.|-]*)>", r"\1", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    commands, words, skip = [], [], False
    for token in lexer:
        if skip:
            skip = False
        elif token in SEPARATORS:
            commands.append(words)
            words = []
        elif token in REDIRECTS:
            skip = True
        else:
            words.append(token)
    return [c for c in [*commands, words] if c]


def clipclap_args(words: list[str]) -> tuple[list[str] | None, dict[str, str]]:
    """clipclap's arguments in a simple command (`clipclap ...`, `.venv/bin/clipclap ...`,
    `python -m clipclap_cli ...`, `torchrun ... -m clipclap_cli ...`) and its env assignments."""
    env = {}
    while words and ASSIGNMENT.match(words[0]):
        name, value = words[0].split("=", 1)
        env[name], words = value, words[1:]
    if words and Path(words[0]).name == "clipclap":
        return words[1:], env
    for k in range(len(words) - 1):
        if words[k] == "-m" and words[k + 1] == "clipclap_cli":
            return words[k + 2:], env
    return None, env


def shell_commands(block: Block) -> list[Command]:
    out = []
    for number, line in logical_lines(block):
        for words in split_commands(line):
            args, env = clipclap_args(words)
            out.append(Command(f"{doc_id(block.doc)}:{number}", " ".join(words), args, env))
    return out


# --- checking a command line against the CLI -----------------------------------------------------

# Typer's click (vendored by recent Typer, click itself before): its UsageError, found through a
# public class, covers unknown options, bad values, missing and extra arguments.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def is_group(command) -> bool:
    return hasattr(command, "commands")


def option_names(command) -> set[str]:
    return {name for p in command.params if p.param_type_name == "option" for name in p.opts + p.secondary_opts}


def parse_problem(root, args: list[str]) -> str | None:
    """What is wrong with `clipclap ARGS` for the CLI `root`, or None. Parsed by click as the
    command would be (option names, values, argument count), never run."""
    command, path = root, ["clipclap"]
    while is_group(command):
        if not args or args[0] == "--help":
            return None  # a group alone prints its help
        if args[0].startswith("-"):  # the app's own options (--version) end the line
            return None if args[0] in option_names(command) else f"{' '.join(path)} has no option {args[0]}"
        sub = command.commands.get(args[0])
        if sub is None:
            return f"{' '.join(path)} has no command {args[0]!r}"
        command, path, args = sub, [*path, args[0]], args[1:]
    if "--help" in args:  # eager: would print and exit
        return None
    try:
        command.make_context(path[-1], list(args), resilient_parsing=False)
    except UsageError as e:
        return f"{' '.join(path)}: {e.format_message()}"
    except ClipclapError as e:  # a name the naming rule refuses (the commands' own checks)
        return f"{' '.join(path)}: {e}"
    return None


def names_problem(root, line: str) -> str | None:
    """What is wrong with the names in `line` (a command in prose or a transcript, shorthands
    allowed: `datasets list|kinds|show` names three commands, `--stage1/--stage2` two options)."""
    try:
        words = shlex.split(line)[1:]
    except ValueError as e:
        return f"cannot read {line!r}: {e}"
    return _names_problem(root, words, ["clipclap"])


def _names_problem(command, words: list[str], path: list[str]) -> str | None:
    if is_group(command) and words and not words[0].startswith("-"):
        for name in words[0].split("|"):
            sub = command.commands.get(name)
            if sub is None:
                return f"{' '.join(path)} has no command {name!r}"
            if problem := _names_problem(sub, words[1:], [*path, name]):
                return problem
        return None
    options = option_names(command) | {"--help"}
    for word in words:
        for name in word.split("=", 1)[0].split("/"):
            if re.fullmatch(r"--?[a-zA-Z][\w-]*", name) and name not in options:
                return f"{' '.join(path)} has no option {name}"
    return None


def prose_command_lines(text: str) -> list[str]:
    """`clipclap ...` commands outside the shell blocks: inline code spans, and the lines of
    other code blocks (transcripts, plain blocks)."""
    candidates = re.findall(r"`([^`\n]+)`", prose(text))
    for block in blocks(text):
        if block.lang not in SHELLS:
            candidates += [strip_comment(line) for line in block.lines]
    commands = [" ".join(part.split()) for line in candidates for part in re.split(r"\s(?:&&|\|\||;|&)\s", line)]
    return [command for command in commands if command.startswith("clipclap ")]


@pytest.fixture(scope="module")
def root():
    return typer.main.get_command(make_app(make_plugin_manager(entrypoints=False)))


# --- 1. every command line parses ----------------------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_shell_blocks_parse_against_the_cli(root, doc):
    commands = [c for b in blocks(doc.read_text(), doc) if b.lang in SHELLS for c in shell_commands(b)]
    problems = [f"{c.where}: `{c.text}`: {problem}" for c in commands
                if c.args is not None and (problem := parse_problem(root, c.args))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_prose_command_lines_name_real_commands_and_options(root, doc):
    problems = [f"{doc_id(doc)}: {line!r}: {problem}" for line in prose_command_lines(doc.read_text())
                if (problem := names_problem(root, line))]
    assert not problems, "\n".join(problems)


def test_the_readme_has_its_two_commands_first_and_an_example_per_command(root):
    text = README.read_text()
    first = blocks(text)[0]
    assert first.lines[:2] == [
        "make demo   # install into .venv, generate the demo benchmark, train, evaluate, print the table",
        "make test   # install into .venv, lint (ruff) and run the test suite"]
    shown = {tuple(c.args[:2]) if c.args[0] in ("datasets", "heads", "encoders", "plugins") else c.args[0]
             for b in blocks(text) if b.lang in SHELLS for c in shell_commands(b) if c.args}
    for name, command in root.commands.items():
        wanted = {(name, sub) for sub in command.commands} if is_group(command) else {name}
        assert wanted & shown, f"the README has no example of `clipclap {name}`"


def test_the_strict_check_finds_what_is_wrong(root):
    def problem(line: str) -> str | None:
        return parse_problem(root, shlex.split(line)[1:])

    assert problem("clipclap train ucf --stage all --seed 3 -p dropout=0.2") is None
    assert problem("clipclap evaluate RUN --json") is None
    assert problem("clipclap report") is None
    assert problem("clipclap datasets show ucf") is None
    assert problem("clipclap --version") is None
    assert problem("clipclap train --help") is None
    assert problem("clipclap trian ucf") == "clipclap has no command 'trian'"
    assert problem("clipclap datasets shwo ucf") == "clipclap datasets has no command 'shwo'"
    assert "No such option: --stages" in problem("clipclap train ucf --stages all")
    assert "No such option: --plot" in problem("clipclap report --format=csv --plot DIR")
    assert "Missing argument" in problem("clipclap import ucf")  # ROOT left out
    assert "unexpected extra argument" in problem("clipclap verify ucf activitynet")
    assert "requires an argument" in problem("clipclap train ucf --epochs")
    assert "Invalid value for '--epochs'" in problem("clipclap train ucf --epochs N")
    assert "split name" in problem("clipclap split ucf --split ../x --seen 3 --unseen 1")


def test_the_names_check_reads_the_shorthands(root):
    assert names_problem(root, "clipclap datasets list|kinds|show") is None
    assert names_problem(root, "clipclap evaluate ucf --stage1/--stage2") is None
    assert names_problem(root, "clipclap datasets list|kinds|shows") == "clipclap datasets has no command 'shows'"
    assert names_problem(root, "clipclap evaluate ucf --stage1/--stage3") == "clipclap evaluate has no option --stage3"
    assert names_problem(root, "clipclap train ucf --stages all") == "clipclap train has no option --stages"


def test_command_lines_are_read_as_the_shell_reads_them():
    text = "\n".join([
        "<!-- test: run -->", "```bash",
        "clipclap train ucf \\", "    --epochs 1   # the paper's: 20",
        "CLIPCLAP_STORE=s.zarr clipclap verify && clipclap report -o 'a b.md' > out.txt",
        "torchrun --nproc-per-node 8 -m clipclap_cli extract ucf --shard 0/2 &",
        "make demo", "```", "", "```console", "$ clipclap evaluate <RUN>", "test: S 1.00", "```",
        "```toml", "x = 1", "```"])
    found = blocks(text)
    assert [(b.lang, b.run, b.line) for b in found] == [("bash", True, 2), ("console", False, 10), ("toml", False, 14)]
    commands = [c for b in found if b.lang in SHELLS for c in shell_commands(b)]
    assert [(c.where, c.args, c.env) for c in commands] == [
        ("README.md:3", ["train", "ucf", "--epochs", "1"], {}),
        ("README.md:5", ["verify"], {"CLIPCLAP_STORE": "s.zarr"}),
        ("README.md:5", ["report", "-o", "a b.md"], {}),
        ("README.md:6", ["extract", "ucf", "--shard", "0/2"], {}),
        ("README.md:7", None, {}),
        ("README.md:11", ["evaluate", "RUN"], {})]


# --- 2. the marked examples run ------------------------------------------------------------------

RUNNABLE = [doc for doc in DOCS if any(b.run for b in blocks(doc.read_text(), doc))]


def test_run_marks_sit_on_shell_blocks():
    for doc in DOCS:
        text = doc.read_text()
        marks = re.sub(r"`[^`\n]+`", "", prose(text))  # a mark quoted in code is no mark
        marked = [b for b in blocks(text, doc) if b.run]
        assert len(marked) == marks.count(RUN_MARK), f"{doc_id(doc)}: a {RUN_MARK} mark is not right before a fence"
        assert all(b.lang in SHELLS for b in marked), f"{doc_id(doc)}: a {RUN_MARK} mark on a non-shell block"
        assert not re.findall(r"<!--\s*test:(?!\s*run\s*-->)", marks), f"{doc_id(doc)}: an unknown test mark"
    assert {README, ROOT / "docs" / "train.md"} <= set(RUNNABLE)


@pytest.fixture
def offline(monkeypatch):
    """No connection leaves the process (local sockets still work)."""
    connect = socket.socket.connect

    def refuse(self, address):
        if self.family == socket.AF_UNIX:
            return connect(self, address)
        raise AssertionError(f"a documented example tried to reach the network: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail(f"network lookup {a}"))


@pytest.mark.parametrize("doc", RUNNABLE, ids=doc_id)
def test_marked_blocks_run_as_written(doc, cli, tmp_path, monkeypatch, offline):
    monkeypatch.chdir(tmp_path)  # an empty folder: the store and runs are the blocks' own
    for block in [b for b in blocks(doc.read_text(), doc) if b.run]:
        for command in shell_commands(block):
            assert command.args is not None, f"{command.where}: a runnable block runs clipclap only: {command.text}"
            with monkeypatch.context() as env:
                for name, value in command.env.items():
                    env.setenv(name, value)
                result = cli(*command.args)
            assert result.exit_code == 0, (f"{command.where}: `{command.text}` exited {result.exit_code}\n"
                                           f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


# --- 3. links ------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", prose(path.read_text()), flags=re.M)}


def links(text: str) -> list[str]:
    """Link targets outside code: `[text](target)` and `![alt](target)`."""
    return re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", re.sub(r"`[^`\n]+`", "", prose(text)))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_relative_links_lead_to_files(doc):
    problems = []
    for target in links(doc.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, fragment = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            problems.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            problems.append(f"{target}: {doc_id(path)} has no heading #{fragment}")
    assert not problems, f"{doc_id(doc)}:\n" + "\n".join(problems)


def test_the_readme_ends_with_a_list_of_every_page():
    text = README.read_text()
    assert "\n## Documentation\n" in text
    listed = {(ROOT / t.partition("#")[0]).resolve() for t in links(text.split("\n## Documentation\n", 1)[1])}
    missing = [doc_id(p) for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in listed]
    assert not missing, f"add these pages to the README's Documentation list: {missing}"
