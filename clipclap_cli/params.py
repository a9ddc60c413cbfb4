"""Per-plugin parameters: a frozen dataclass per plugin, filled from `-p KEY=VALUE` options."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from clipclap_cli.errors import ParamError

P = TypeVar("P")

#: The largest whole number a parameter may hold (int64: what JSON, zarr attributes and torch keep).
MAX_INT = 2**63 - 1
#: The largest size (`check_ranges`): a width, depth or count past it is a typo, not a model.
MAX_SIZE = 1_000_000


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _coerce(name: str, raw: Any, annotation: Any, typed: bool = False) -> Any:
    """Convert `raw` (a string from the command line, or a TOML value) to the field's type;
    `typed` (a TOML value): a string where a number or true/false is expected is refused."""
    if typed and isinstance(raw, str) and annotation in (int, float, bool):
        expected = "true or false" if annotation is bool else "a number" if annotation is float else "a whole number"
        raise ParamError(f"parameter {name}={raw!r}: expected {expected}, not a string")
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if raw not in choices:
            raise ParamError(f"parameter {name}={raw!r}: expected one of {', '.join(map(str, choices))}")
        return raw
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ParamError(f"parameter {name}={raw!r}: expected true or false")
    if annotation in (int, float, str):
        if annotation is str and not isinstance(raw, str):  # the command line gives strings; TOML may not
            raise ParamError(f"parameter {name}={raw!r}: expected a string")
        if annotation is not str and isinstance(raw, bool | list | dict):
            raise ParamError(f"parameter {name}={raw!r}: expected {annotation.__name__}")
        try:
            value = annotation(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError, OverflowError):
            raise ParamError(f"parameter {name}={raw!r}: expected {annotation.__name__}") from None
        if annotation is int and isinstance(raw, float) and raw != value:
            raise ParamError(f"parameter {name}={raw!r}: expected int")
        if annotation is int and abs(value) > MAX_INT:
            raise ParamError(f"parameter {name}={_shown(raw)}: expected a whole number from {-MAX_INT} to {MAX_INT}")
        if annotation is float and not math.isfinite(value):
            raise ParamError(f"parameter {name}={raw!r}: expected a finite number")
        return value
    return raw


def field_types(params_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(params_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(params_cls)}


def build_params(params_cls: type[P], values: Mapping[str, Any], where: str = "", typed: bool = False) -> P:
    """Instantiate `params_cls` from a mapping, coercing types and rejecting unknown keys;
    `typed`: the values come typed (TOML), so a string is not read as a number or flag."""
    types = field_types(params_cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ParamError(
            f"{prefix}unknown parameter {unknown[0]!r}; valid: {', '.join(types) or '(none)'}"
        )
    try:
        return params_cls(**{k: _coerce(k, v, types[k], typed) for k, v in values.items()})
    except ValueError as e:  # a Params' own check (__post_init__, see `check_ranges`)
        raise ParamError(f"{where}: {e}" if where else str(e)) from None


def check_ranges(params: Any, *, sizes: Iterable[str] = (), rates: Iterable[str] = ()) -> None:
    """For a Params' `__post_init__`: `sizes` (widths, counts) must be from 1 to MAX_SIZE and
    `rates` (dropout probabilities) in [0, 1); a ValueError names the first that is not."""
    for name in sizes:
        if getattr(params, name) < 1:
            raise ValueError(f"parameter {name}={getattr(params, name)!r}: expected at least 1")
        if getattr(params, name) > MAX_SIZE:
            raise ValueError(f"parameter {name}={_shown(getattr(params, name))}: expected at most {MAX_SIZE}")
    for name in rates:
        if not 0 <= getattr(params, name) < 1:
            raise ValueError(f"parameter {name}={getattr(params, name)!r}: expected 0 <= {name} < 1")


def pairs_to_dict(pairs: Iterable[str]) -> dict[str, str]:
    """["key=value", ...] -> {key: value} (strings; `build_params` coerces them)."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"parameter {pair!r} is not KEY=VALUE")
        values[key.strip()] = value.strip()
    return values


def parse_params(pairs: Iterable[str], params_cls: type[P]) -> P:
    """Parse ["key=value", ...] into `params_cls` (a dataclass)."""
    return build_params(params_cls, pairs_to_dict(pairs))


def describe_params(params_cls: type) -> list[dict[str, Any]]:
    """Each field with its type, default and docstring (for `clipclap heads list --params`)."""
    docs = _field_docs(params_cls)
    out = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append({"name": f.name, "type": str(f.type), "default": default, "doc": docs.get(f.name, "")})
    return out


def _field_docs(params_cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right after the field), read from the source."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(params_cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs, last = {}, None
    for node in tree.body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            last = node.target.id
        elif last and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            docs[last] = str(node.value.value)
            last = None
        else:
            last = None
    return docs
