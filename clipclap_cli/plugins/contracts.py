"""The fusion-head contract, checked where it is used: what `distances` and `loss` return.

A head that breaks it stops the run with a `HeadContractError` of at most three lines: the
head and where it comes from, what was expected, what came. No malformed output ever becomes a
number. The checks cost no device synchronisation in the training step (shapes and flags
only); the finite check of distances runs once per evaluation.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

import torch

from clipclap_cli.errors import ClipclapError


class HeadContractError(ClipclapError):
    """A fusion head returned something its contract does not allow."""


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def head_origin(head: Any) -> str:
    """'fusion head NAME (module M, distribution D V)': who to ask about a broken head."""
    cls = head if isinstance(head, type) else type(head)
    module = cls.__module__
    dists = _distributions().get(module.split(".")[0], [])
    where = f"module {module}"
    if dists:
        try:
            where += f", distribution {dists[0]} {importlib.metadata.version(dists[0])}"
        except importlib.metadata.PackageNotFoundError:
            where += f", distribution {dists[0]}"
    return f"fusion head {getattr(cls, 'head_id', cls.__name__)!r} ({where})"


def _fail(head: Any, expected: str, came: str) -> HeadContractError:
    return HeadContractError(f"{head_origin(head)} broke its contract\n  expected: {expected}\n  came: {came}")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def check_distances(head: Any, dists: Any, samples: int, classes: int) -> dict[str, torch.Tensor]:
    """`distances(...)` must give {"both": (N, C), optional "audio"/"video": (N, C)}, finite,
    floating point. Returns `dists`; raises HeadContractError naming the first break."""
    expected = f"distances as {{'both': tensor, ...}}, each finite and of shape (N, C) = ({samples}, {classes})"
    if not isinstance(dists, dict) or "both" not in dists:
        raise _fail(head, expected, _describe(dists) + ("" if not isinstance(dists, dict) else
                                                        f" with keys {sorted(map(str, dists))}"))
    for mode, d in dists.items():
        if not isinstance(d, torch.Tensor) or not d.is_floating_point() or tuple(d.shape) != (samples, classes):
            raise _fail(head, expected, f"distances[{mode!r}] is {_describe(d)}")
    bad = [mode for mode, d in dists.items() if not bool(torch.isfinite(d).all())]
    if bad:
        raise _fail(head, expected, f"distances[{bad[0]!r}] holds NaN or infinite values")
    return dists


def check_loss(head: Any, result: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`loss(...)` must give (a scalar tensor with a gradient, {name: scalar tensor}). Shapes and
    flags only: no synchronisation with the device (finite values are checked per epoch)."""
    expected = "loss as (total, {name: part}): total a scalar tensor with a gradient, each part a scalar tensor"
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise _fail(head, expected, _describe(result))
    total, parts = result
    if not isinstance(total, torch.Tensor) or total.dim() != 0:
        raise _fail(head, expected, f"total is {_describe(total)}")
    if not total.requires_grad:
        raise _fail(head, expected, "total has no gradient (computed without the head's parameters, or detached)")
    for name, part in parts.items():
        if not isinstance(part, torch.Tensor) or part.dim() != 0:
            raise _fail(head, expected, f"part {name!r} is {_describe(part)}")
    return total, parts
