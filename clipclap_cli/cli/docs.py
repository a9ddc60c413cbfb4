"""`clipclap docs [TOPIC]`: the documentation pages, read from the installed package.

clipclap has no web site: the pages of the repository's docs/ folder ship in the wheel (as the
package data `clipclap_cli.docs`), so a pip user reads the page a message cites with this
command. In a clone with an editable install, the pages are read from docs/ itself.
"""

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from clipclap_cli.cli.console import out

HOW = "clipclap docs"
"The command every message that cites a page names: `clipclap docs TOPIC`"


def pages() -> dict[str, object]:
    """Every page by its topic (its file name without .md): the package's copy, else (a clone
    installed in place, whose package holds no copy) the repository's docs/ folder."""
    try:
        folder = resources.files("clipclap_cli.docs")
        found = {p.name[:-3]: p for p in folder.iterdir() if p.name.endswith(".md")}
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        found = {}
    if not found:
        clone = Path(__file__).resolve().parents[2] / "docs"
        found = {p.stem: p for p in clone.glob("*.md")} if clone.is_dir() else {}
    return dict(sorted(found.items()))


def title(text: str) -> str:
    """A page's first heading, without its #."""
    return next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), "")


def install(app, pm) -> None:
    @app.command("docs")
    def docs(
        topic: Annotated[str | None, typer.Argument(metavar="TOPIC", help="The page to print, e.g. plugins, train, cluster (left out: list the pages)")] = None,
    ):
        """Print a documentation page; without TOPIC, list them.

        The pages of the repository's docs/ folder, as Markdown, from the installed package:
        messages and --help cite them as `clipclap docs TOPIC`."""
        from clipclap_cli.errors import ClipclapError, UnknownNameError

        found = pages()
        if not found:
            raise ClipclapError("this installation holds no documentation pages (a wheel ships them as "
                                "clipclap_cli/docs; reinstall clipclap)")
        if topic is None:
            width = max(map(len, found))
            for name, page in found.items():
                out.file.write(f"{name:<{width}}  {title(page.read_text(encoding='utf-8'))}\n")
            out.file.write(f"\n{HOW} TOPIC prints a page.\n")
            return
        name = topic.removesuffix(".md").removeprefix("docs/")
        if name not in found:
            raise UnknownNameError("documentation page", topic, found, HOW)
        out.file.write(found[name].read_text(encoding="utf-8"))
        out.file.flush()
