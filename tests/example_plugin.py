"""The example plugin (examples/clipclap-example-plugin) registered in-process, not installed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from clipclap_cli.plugins.manager import make_plugin_manager

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "clipclap-example-plugin"


def manager_with_example():
    """Built-ins plus the example plugin's module, registered by hand like a script would (its
    folder is on sys.path only while it is imported, as after a `sys.path` edit undone)."""
    sys.path.insert(0, str(FOLDER))
    try:
        module = importlib.import_module("clipclap_example")
        importlib.import_module("clipclap_example_head")  # the hook imports it lazily
    finally:
        sys.path.pop(0)
    pm = make_plugin_manager(entrypoints=False)
    pm.register(module, "example")
    return pm
