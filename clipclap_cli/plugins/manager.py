"""The plugin manager: built-ins and third-party plugins go through the same hooks."""

from __future__ import annotations

import functools
import importlib
import os
import pickle
import sys
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


def make_plugin_manager(*, entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a plugin manager with the built-ins and (optionally) installed third-party plugins.

    `CLIPCLAP_LOAD_PLUGINS` limits entry points: unset loads all, "" loads none, "a,b" loads those.
    `CLIPCLAP_TRACE_PLUGINS=1` prints every hook call to stderr.
    """
    pm = _empty_manager()
    if entrypoints:
        only = os.environ.get("CLIPCLAP_LOAD_PLUGINS")
        if only is None:
            pm.load_setuptools_entrypoints("clipclap")
        else:
            for name in filter(None, (n.strip() for n in only.split(","))):
                pm.load_setuptools_entrypoints("clipclap", name=name)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), module_name)
    return _finish(pm)


def _empty_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("clipclap")
    pm.add_hookspecs(hookspecs)
    return pm


def _finish(pm: pluggy.PluginManager) -> pluggy.PluginManager:
    pm.check_pending()
    if os.environ.get("CLIPCLAP_TRACE_PLUGINS"):
        pm.trace.root.setwriter(sys.stderr.write)  # pluggy's own tracing: every hook call and its result
        pm.enable_tracing()
    return pm


@dataclass(frozen=True)
class PortablePlugin:
    """One plugin of a manager, in a form another process can register again: a module by its
    import name (and the folder it was found in, for a module found through a path that process
    may lack), any other object pickled (so a class by reference)."""

    name: str
    module: str | None = None
    folder: str | None = None
    pickled: bytes | None = None

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
            out.append(PortablePlugin(name, plugin.__name__, _import_root(plugin)))
            continue
        try:
            out.append(PortablePlugin(name, pickled=pickle.dumps(plugin)))
        except Exception as e:  # pickling raises many kinds
            raise ClipclapError(f"plugin {name!r} cannot be sent to worker processes ({e}); "
                                "register a module, or train without --jobs") from None
    return out


def rebuild_plugin_manager(plugins: list[PortablePlugin]) -> pluggy.PluginManager:
    """A manager with the same plugins, under the same names, as the one `plugins` came from."""
    pm = _empty_manager()
    for plugin in plugins:
        pm.register(plugin.load(), plugin.name)
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
