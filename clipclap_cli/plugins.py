"""The plugin manager: built-ins and third-party plugins go through the same hooks."""

from __future__ import annotations

import functools
import importlib
import os
import sys

import pluggy

from . import hookspecs

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
    pm = pluggy.PluginManager("clipclap")
    pm.add_hookspecs(hookspecs)
    if entrypoints:
        only = os.environ.get("CLIPCLAP_LOAD_PLUGINS")
        if only is None:
            pm.load_setuptools_entrypoints("clipclap")
        else:
            for name in filter(None, (n.strip() for n in only.split(","))):
                pm.load_setuptools_entrypoints("clipclap", name=name)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), module_name)
    pm.check_pending()
    if os.environ.get("CLIPCLAP_TRACE_PLUGINS"):
        pm.add_hookcall_monitoring(_trace_before, _trace_after)
    return pm


def _trace_before(hook_name, hook_impls, kwargs):
    print(f"[clipclap] {hook_name} -> {[i.plugin_name for i in hook_impls]}", file=sys.stderr)


def _trace_after(outcome, hook_name, hook_impls, kwargs):
    pass


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager used by the console script and the convenience API."""
    return make_plugin_manager()


def plugin_versions(pm: pluggy.PluginManager) -> dict[str, str | None]:
    """Distribution version of each entry-point plugin (None for built-ins)."""
    return {name: dist.version for name, dist in ((p_name, d) for p_name, d in _dists(pm))}


def _dists(pm):
    for plugin, dist in pm.list_plugin_distinfo():
        yield pm.get_name(plugin), dist
