"""Built-in fusion heads. Head modules import torch, so they are imported inside the hook."""

from __future__ import annotations

from clipclap_cli import hookimpl


@hookimpl
def register_heads(register):
    from .clipclap_head import ClipClapHead

    register(ClipClapHead)
