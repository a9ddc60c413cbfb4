"""Named accessors over the plugin registries (llm/timm style)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import ClipclapError
from .registry import Registry, collect


def _manager(pm):
    if pm is None:
        from .plugins import get_plugin_manager

        return get_plugin_manager()
    return pm


def _check_params(obj: Any, what: str) -> None:
    if not dataclasses.is_dataclass(getattr(obj, "Params", None)):
        raise ClipclapError(f"{what} must declare a `Params` dataclass")


def _validate_adapter(cls) -> None:
    if not isinstance(getattr(cls, "kind", None), str) or not cls.kind:
        raise ClipclapError(f"dataset adapter {cls!r} has no `kind`")
    _check_params(cls, f"dataset adapter {cls.kind!r}")


def _validate_encoder(enc) -> None:
    if not getattr(enc, "encoder_id", None):
        raise ClipclapError(f"encoder {enc!r} has no `encoder_id`")
    if getattr(enc, "modality", None) not in ("audio", "video", "text"):
        raise ClipclapError(f"encoder {enc.encoder_id!r}: modality must be audio, video or text")
    if not isinstance(getattr(enc, "dim", None), int) or enc.dim <= 0:
        raise ClipclapError(f"encoder {enc.encoder_id!r}: dim must be a positive integer")


def _validate_head(cls) -> None:
    if not getattr(cls, "head_id", None):
        raise ClipclapError(f"fusion head {cls!r} has no `head_id`")
    _check_params(cls, f"fusion head {cls.head_id!r}")


def list_dataset_kinds(pm=None) -> Registry:
    return collect(_manager(pm), "register_datasets", "dataset kind", lambda c: c.kind,
                   _validate_adapter, "clipclap datasets kinds")


def list_encoders(pm=None) -> Registry:
    return collect(_manager(pm), "register_encoders", "encoder", lambda e: e.encoder_id,
                   _validate_encoder, "clipclap encoders list")


def list_heads(pm=None) -> Registry:
    return collect(_manager(pm), "register_heads", "fusion head", lambda c: c.head_id,
                   _validate_head, "clipclap heads list")


def get_encoder(name: str, pm=None):
    return list_encoders(pm).get(name)


def get_head(name: str, pm=None):
    return list_heads(pm).get(name)


def create_head(name: str, dims, params=None, pm=None):
    """Instantiate fusion head `name` for `dims` with `params` (a dict or its Params)."""
    from .params import build_params

    cls = get_head(name, pm)
    if params is None or isinstance(params, dict):
        params = build_params(cls.Params, params or {})
    return cls(dims, params)
