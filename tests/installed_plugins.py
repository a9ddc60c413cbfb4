"""Plugins as real installed distributions, made by the tests: a .dist-info folder with an entry
point beside the plugin's module, on PYTHONPATH, for `clipclap` run in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prestarted import clipclap_run

VENV_BIN = Path(sys.executable).parent


def install(root: Path, name: str, source: str) -> None:
    """A distribution `clipclap-NAME` 1.0 whose entry point NAME is the module `NAME_plugin`."""
    (root / f"{name}_plugin.py").write_text(textwrap.dedent(source))
    info = root / f"clipclap_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: clipclap-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[clipclap]\n{name} = {name}_plugin\n")


def environment(root: Path) -> dict[str, str]:
    """This process's environment with the plugins in `root` installed, all entry points loaded."""
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPCLAP_LOAD_PLUGINS", "CLIPCLAP_DEBUG")}
    return env | {"PYTHONPATH": str(root)}


def clipclap(env: dict[str, str], *args) -> subprocess.CompletedProcess:
    """`clipclap ARGS` in a process of its own with `env` (PYTHONPATH: the plugins installed)."""
    return clipclap_run(args, env=env, timeout=300)
