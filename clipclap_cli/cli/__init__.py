"""The clipclap command line: a thin Typer layer over the core modules.

The modules that define commands (those with an `install(app, pm)`) do not use
`from __future__ import annotations`: Typer reads each option from its annotation, and string
annotations cost it an `eval` apiece, which made building the command line about 3 times slower
(58 ms -> 17 ms; the Python API and the tests build it once per plugin manager, see `_command`)."""

import os
import sys
import weakref
from typing import Annotated

import typer

from clipclap_cli.errors import ClipclapError
from clipclap_cli.processes import Terminated, stop_signals_interrupt


def make_app(pm) -> typer.Typer:
    """Build the clipclap CLI with the core commands plus plugin-contributed ones."""
    from clipclap_cli.cli import (
        demo,
        docs,
        embed,
        evaluate,
        export,
        extract,
        import_,
        inspect,
        predict,
        report,
        split,
        train,
        verify,
    )
    from clipclap_cli.plugins.manager import in_precedence, leave_out, trace

    app = typer.Typer(
        name="clipclap",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
        help="Audio-visual generalized zero-shot learning with CLIP/CLAP features (ClipClap-GZSL).",
    )
    app.callback()(_version_option)
    for module in (extract, import_, split, embed, train, evaluate, predict, export, report, verify, demo, inspect, docs):
        module.install(app, pm)
    for impl in in_precedence(pm.hook.register_commands.get_hookimpls()):
        trace(pm, f"{impl.plugin_name} register_commands")
        try:
            impl.function(app=app)
        except (Exception, SystemExit) as e:  # a plugin's command may fail to install: it is left out, the rest works
            leave_out(pm, impl.plugin_name, "register_commands", e)
    return app


#: plugin manager -> (its plugins when the command was built, the command): see `_command`
_COMMANDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _command(pm):
    """`make_app(pm)` as the click command Typer makes of it, built once per plugin manager and
    set of registered plugins. Typer builds it from every option's type annotations (about 50 ms
    a time): a `clipclap` process builds it once anyway, but the Python API and the test suite
    run many commands in one process. A plugin registered or left out since builds it again."""
    cached = _COMMANDS.get(pm)
    if cached is not None and cached[0] == frozenset(pm.get_plugins()):
        return cached[1]
    command = typer.main.get_command(make_app(pm))
    _COMMANDS[pm] = (frozenset(pm.get_plugins()), command)  # after the build: it may leave plugins out
    return command


def _print_version(asked: bool) -> None:
    if asked:
        from clipclap_cli import __version__

        print(f"clipclap {__version__}")
        raise typer.Exit()


def _version_option(
        version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                              help="Print clipclap's version and exit")] = False) -> None:
    """The app's own options, given before any command (its help text is make_app's)."""


def run(argv: list[str] | None, pm) -> int:
    """Run the CLI and return its exit status; ClipclapError becomes one red line on stderr."""
    from rich.markup import escape

    from clipclap_cli.cli.console import err
    from clipclap_cli.plugins.manager import on_failure

    def warn(failure) -> None:  # once per plugin left out, when it is found out, on stderr
        err.print(f"[yellow]Warning:[/yellow] {escape(failure.line())}", highlight=False)
        if os.environ.get("CLIPCLAP_DEBUG") and failure.traceback:
            err.print(escape(failure.traceback), highlight=False)

    on_failure(pm, warn)
    try:
        with stop_signals_interrupt():  # SIGTERM and SIGHUP stop it as Ctrl-C does, workers and all
            # what `Typer.__call__` does, less its traceback hook, which does nothing with
            # pretty_exceptions_enable=False
            _command(pm)(args=argv, prog_name="clipclap")
    except SystemExit as e:
        interrupt = _interrupted(e)  # Typer turns Ctrl-C into a silent exit 130
        if isinstance(interrupt, Terminated):
            err.print(f"[yellow]Stopped ({interrupt.args[0]}).[/yellow] Rerun the same command to resume.")
            return 128 + interrupt.signum
        if interrupt is not None:
            err.print("[yellow]Interrupted.[/yellow] Rerun the same command to resume.")
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except ClipclapError as e:
        if os.environ.get("CLIPCLAP_DEBUG"):
            raise
        err.print(f"[red]Error:[/red] {escape(str(e))}")
        return 1
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        raise
    except OSError as e:  # a file or folder the system refuses (an output path, a full disk)
        if os.environ.get("CLIPCLAP_DEBUG"):
            raise
        err.print(f"[red]Error:[/red] {escape(_os_error_line(e))}")
        return 1
    except Terminated as e:
        err.print(f"[yellow]Stopped ({e.args[0]}).[/yellow] Rerun the same command to resume.")
        return 128 + e.signum
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted.[/yellow] Rerun the same command to resume.")
        return 130
    return 0


def _os_error_line(e: OSError) -> str:
    """'PATH: No such file or directory', as the shell says it."""
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {e.strerror}" if paths and e.strerror else str(e)


def _interrupted(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or a stop signal's Terminated) among the exceptions that
    led to `exc`, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main() -> None:
    """Console-script entry point."""
    from clipclap_cli.plugins.manager import get_plugin_manager

    try:
        pm = get_plugin_manager()
    except ClipclapError as e:
        sys.stderr.write(f"Error: {e}\n")
        raise SystemExit(1) from None
    raise SystemExit(run(None, pm))
