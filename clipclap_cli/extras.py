"""Optional dependencies: the core install trains, evaluates and reports; extraction and plots
come with extras (`pip install 'clipclap[extract]'`, `'clipclap[plots]'`, `'clipclap[all]'`).
A command that needs a missing one stops with one line naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from clipclap_cli.errors import MissingExtraError

DISTRIBUTIONS = {"av": "av (PyAV)", "open_clip": "open_clip_torch", "PIL": "pillow", "transformers": "transformers",
                 "matplotlib": "matplotlib"}
"The distribution that provides each optional module, as pip names it"


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """`module`, imported; if it is not installed, a MissingExtraError that says `purpose` needs it
    and which extra brings it. An import error from inside an installed module is left as it is."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != module.split(".")[0]:
            raise
        top = module.split(".")[0]
        raise MissingExtraError(f"{purpose} needs {DISTRIBUTIONS.get(top, top)}, which is not installed: "
                                f"pip install 'clipclap[{extra}]'") from None
