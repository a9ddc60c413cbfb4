"""Built-in fusion heads. Head modules import torch, so they are imported inside the hook."""

from __future__ import annotations

from clipclap_cli.api import hookimpl


@hookimpl
def register_heads(register):
    from .clipclap_head import ClipClapHead
    from .heads_avca import AvcaHead, HyperMultipleHead
    from .heads_compat import AleHead, ApnHead, DeviseHead, SjeHead
    from .heads_hspmoe import HspMoeHead
    from .heads_tcaf import TcafHead
    from .heads_triplet import AvgzslnetHead, CjmeHead
    from .heads_zeroshot import ZeroshotHead

    register(ClipClapHead)
    for head in (CjmeHead, AvgzslnetHead, AvcaHead, HyperMultipleHead, DeviseHead, AleHead, SjeHead, ApnHead,
                 TcafHead, ZeroshotHead, HspMoeHead):
        register(head)
