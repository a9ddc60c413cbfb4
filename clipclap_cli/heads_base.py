"""Deprecated: the fusion-head contract's home in clipclap 0.1 and 0.2, whose docs told plugin
authors to write `from clipclap_cli.heads_base import FusionHead` (and `Block`, `fbrd`,
`Dropout`). The names now come from `clipclap_cli.api`; each still works from here, with a
DeprecationWarning naming its new place, until this shim is removed in clipclap 0.5.
"""

from __future__ import annotations

import warnings

MOVED = ("FusionHead", "Batch", "Block", "Dropout", "MODES", "fbrd")
"What 0.2's clipclap_cli.heads_base held, all of it now in clipclap_cli.api"


def __getattr__(name: str):
    if name not in MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"clipclap_cli.heads_base.{name} moved to clipclap_cli.api.{name}: import it from there "
                  "(clipclap_cli.heads_base is removed in clipclap 0.5)", DeprecationWarning, stacklevel=2)
    from clipclap_cli import api

    return getattr(api, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *MOVED})
