"""The plugin manager: built-ins and third-party plugins go through the same hooks."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import pickle
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

import pluggy

from clipclap_cli.plugins import hookspecs

DEFAULT_PLUGINS = (
    "clipclap_plugins.datasets",
    "clipclap_plugins.encoders",
    "clipclap_plugins.heads",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin left out: it failed to load or to register. The command goes on without it."""

    plugin: str
    "Its name: the entry point's, or the name it was registered under"
    distribution: str | None
    "The installed distribution that provides it ('name version'), if known"
    reason: str
    traceback: str = ""
    "Shown with CLIPCLAP_DEBUG=1"
    left_out: bool = True
    "False for a notice about a plugin that still works (a deprecated hook name)"

    def line(self) -> str:
        source = f" of {self.distribution}" if self.distribution else ""
        return f"plugin {self.plugin!r}{source} " + ("is left out: " if self.left_out else "") + self.reason


def failures(pm: pluggy.PluginManager) -> list[PluginFailure]:
    """The plugins of `pm` left out so far, in order."""
    return pm.__dict__.setdefault("clipclap_failures", [])


def record_failure(pm: pluggy.PluginManager, plugin: str, reason: str, error: BaseException | None = None,
                   left_out: bool = True) -> None:
    """Leave out `plugin` for `reason` (once per plugin and reason): listed by `clipclap plugins`,
    shown as a warning by the command line (`on_failure`), its traceback with CLIPCLAP_DEBUG=1.
    With `left_out=False`, a warning about a plugin that still works."""
    failure = PluginFailure(plugin, distribution(pm, plugin), reason,
                            "".join(traceback.format_exception(error)) if error is not None else "", left_out)
    if any((f.plugin, f.reason) == (plugin, reason) for f in failures(pm)):
        return
    failures(pm).append(failure)
    callback = pm.__dict__.get("clipclap_on_failure")
    if callback is not None:
        callback(failure)


def leave_out(pm: pluggy.PluginManager, plugin: str, hook_name: str, error: BaseException) -> None:
    """A plugin whose `hook_name` hook raised `error`: recorded (`record_failure`) and
    unregistered whole, so that none of its hooks runs in this command."""
    from clipclap_cli.errors import ClipclapError

    reason = str(error) if isinstance(error, ClipclapError) else f"{type(error).__name__}: {str(error)[:200]}"
    record_failure(pm, plugin, f"its {hook_name} hook failed ({reason})", error)
    if pm.has_plugin(plugin):
        pm.unregister(name=plugin)


def on_failure(pm: pluggy.PluginManager, callback) -> None:
    """Call `callback(failure)` for every plugin left out, those so far and those to come."""
    pm.__dict__["clipclap_on_failure"] = callback
    for failure in failures(pm):
        callback(failure)


def distribution(pm: pluggy.PluginManager, plugin: str) -> str | None:
    """'name version' of the distribution that installed `plugin`: clipclap's own for the
    built-ins, None for plugins registered by hand."""
    if plugin in DEFAULT_PLUGINS:
        from clipclap_cli import __version__

        return f"clipclap {__version__}"
    return pm.__dict__.setdefault("clipclap_distributions", {}).get(plugin)


def trace(pm: pluggy.PluginManager, message: str) -> None:
    """One line on stderr with CLIPCLAP_TRACE_PLUGINS=1: what a register hook registered (pluggy's
    own tracing shows the hooks called through `pm.hook`; register hooks are called one by one)."""
    if pm.__dict__.get("clipclap_trace"):
        sys.stderr.write(f"clipclap plugins: {message}\n")


DEPRECATED_HOOKS = {"register_datasets": "register_dataset_kinds"}
"Old hook name -> new one; the old names work, with a warning, until clipclap 0.4"


def in_precedence(impls: list) -> list:
    """Hook implementations in a stable order: the built-ins first, then the other plugins as
    they were registered (how listings order registrations that share a name)."""
    return sorted(impls, key=lambda impl: impl.plugin_name not in DEFAULT_PLUGINS)


def make_plugin_manager(*, entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a plugin manager with the built-ins and (optionally) installed third-party plugins.

    A third-party plugin that cannot be imported or registered (any exception, a hook name or
    signature pluggy does not know) is left out with a `PluginFailure`; every other plugin works.
    `CLIPCLAP_LOAD_PLUGINS` limits entry points: unset loads all, "" loads none, "a,b" loads those.
    `CLIPCLAP_TRACE_PLUGINS=1` prints every hook call to stderr.
    """
    pm = _empty_manager()
    if entrypoints:
        only = os.environ.get("CLIPCLAP_LOAD_PLUGINS")
        wanted = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        for entry_point in importlib.metadata.entry_points(group="clipclap"):
            if wanted is None or entry_point.name in wanted:
                _load_entry_point(pm, entry_point)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), module_name)
    return _finish(pm)


def _load_entry_point(pm: pluggy.PluginManager, entry_point) -> None:
    """Import and register one installed plugin; a failure leaves it out, named."""
    name = entry_point.name
    if pm.has_plugin(name) or pm.is_blocked(name):
        return
    dist = getattr(entry_point, "dist", None)
    if dist is not None:
        pm.__dict__.setdefault("clipclap_distributions", {})[name] = f"{dist.name} {dist.version}"
    try:
        plugin = entry_point.load()
    except (Exception, SystemExit) as e:  # whatever its import raises, a sys.exit() too
        record_failure(pm, name, f"it cannot be imported ({type(e).__name__}: {_first_line(e)}; "
                                 f"entry point {entry_point.value})", e)
        return
    try:
        pm.register(plugin, name=name)
    except (Exception, SystemExit) as e:  # pluggy's PluginValidationError (a hook's arguments), or a duplicate name
        record_failure(pm, name, " ".join(str(e).split())[:300], e)  # pluggy's message spans lines


def _leave_out_unknown_hooks(pm: pluggy.PluginManager) -> None:
    """Every plugin implementing a hook clipclap does not specify (a misspelt name) is left
    out, with the closest hook name; pluggy's check_pending would fail every command instead."""
    import difflib

    known = [name for name in dir(pm.hook) if not name.startswith("_")]
    for name, plugin in list(pm.list_name_plugin()):
        if plugin is None:
            continue
        unknown = [caller.name for caller in pm.get_hookcallers(plugin) or [] if not caller.has_spec()]
        if unknown:
            guess = difflib.get_close_matches(unknown[0], [k for k in known if getattr(pm.hook, k).has_spec()], n=1)
            pm.unregister(plugin)
            record_failure(pm, name, f"it implements {unknown[0]!r}, which is not a clipclap hook"
                                     + (f" (did you mean {guess[0]!r}?)" if guess else ""))


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _empty_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("clipclap")
    pm.add_hookspecs(hookspecs)
    return pm


def _finish(pm: pluggy.PluginManager) -> pluggy.PluginManager:
    _leave_out_unknown_hooks(pm)
    _warn_of_deprecated_hooks(pm)
    if os.environ.get("CLIPCLAP_TRACE_PLUGINS"):
        pm.__dict__["clipclap_trace"] = True
        pm.trace.root.setwriter(sys.stderr.write)  # pluggy's own tracing: every hook call and its result
        pm.enable_tracing()
    return pm


def _warn_of_deprecated_hooks(pm: pluggy.PluginManager) -> None:
    """A plugin implementing a renamed hook still works; a warning names it and the new name."""
    for old, new in DEPRECATED_HOOKS.items():
        for impl in getattr(pm.hook, old).get_hookimpls():
            if impl.plugin_name not in DEFAULT_PLUGINS:
                record_failure(pm, impl.plugin_name, f"implements {old}, renamed {new} (the old name works until "
                                                     "clipclap 0.4; rename the function)", left_out=False)


@dataclass(frozen=True)
class PortablePlugin:
    """One plugin of a manager, in a form another process can register again: a module by its
    import name (and the folder it was found in, for a module found through a path that process
    may lack), any other object pickled (so a class by reference)."""

    name: str
    module: str | None = None
    folder: str | None = None
    pickled: bytes | None = None
    distribution: str | None = None
    "Where it was installed from, so that `SOURCE:NAME` picks the same registration there"

    def load(self) -> object:
        if self.module is None:
            # not a pickle from outside: the parent process made it, as multiprocessing pickles its arguments
            return pickle.loads(self.pickled)
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError:
            if self.folder is None or self.folder in sys.path:
                raise
            sys.path.append(self.folder)  # after everything else: it adds, it never shadows
            return importlib.import_module(self.module)


def portable_plugins(pm: pluggy.PluginManager) -> list[PortablePlugin]:
    """Every plugin of `pm` (built-ins, entry points, and any registered by hand), for
    `rebuild_plugin_manager` in a worker process; an object that cannot be sent is an error."""
    from clipclap_cli.errors import ClipclapError

    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        if isinstance(plugin, types.ModuleType):
            out.append(PortablePlugin(name, plugin.__name__, _import_root(plugin), distribution=distribution(pm, name)))
            continue
        try:
            out.append(PortablePlugin(name, pickled=pickle.dumps(plugin), distribution=distribution(pm, name)))
        except Exception as e:  # pickling raises many kinds
            raise ClipclapError(f"plugin {name!r} cannot be sent to worker processes ({e}); "
                                "register a module, or train without --jobs") from None
    return out


def rebuild_plugin_manager(plugins: list[PortablePlugin]) -> pluggy.PluginManager:
    """A manager with the same plugins, under the same names, as the one `plugins` came from."""
    pm = _empty_manager()
    for plugin in plugins:
        pm.register(plugin.load(), plugin.name)
        if plugin.distribution and plugin.name not in DEFAULT_PLUGINS:
            pm.__dict__.setdefault("clipclap_distributions", {})[plugin.name] = plugin.distribution
    return _finish(pm)


def _import_root(module: types.ModuleType) -> str | None:
    """The sys.path folder `module` was imported from (None for a module without a file)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    root = Path(file).parent
    if Path(file).name == "__init__.py":
        root = root.parent
    for _ in range(module.__name__.count(".")):
        root = root.parent
    return str(root)


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager used by the console script and the convenience API."""
    return make_plugin_manager()
