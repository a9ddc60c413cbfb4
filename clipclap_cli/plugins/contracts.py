"""The plugin contracts, checked where they are used, and by the contract kit
(`clipclap plugins check`, `clipclap_cli.testing`), which calls these same functions.

* registration: what `register(...)` is given (`validate_adapter`, `validate_encoder`,
  `validate_head`); a break leaves the plugin out with one named warning;
* output: what a head's `loss` and `distances`, an encoder's `encode_batch` and
  `label_embedding` return. A break stops the command with a `ContractError` of at most three
  lines: the plugin object and where it comes from, what was expected, what came. No malformed
  output ever becomes a number. The checks cost no device synchronisation in the training step
  (shapes and flags only); the finite check of distances runs once per evaluation.

torch is imported inside the functions: registration runs for `clipclap --help`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from clipclap_cli.api import LABEL_PARTS
from clipclap_cli.errors import ClipclapError

if TYPE_CHECKING:  # pragma: no cover
    import torch


class ContractError(ClipclapError):
    """A plugin object (head, encoder, dataset format) returned something its contract does not allow."""


class HeadContractError(ContractError):
    """A fusion head returned something its contract does not allow."""


class EncoderContractError(ContractError):
    """An encoder returned something its contract does not allow."""


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def head_origin(head: Any) -> str:
    """'fusion head NAME (module M, distribution D V)': who to ask about a broken head."""
    cls = head if isinstance(head, type) else type(head)
    return f"fusion head {getattr(cls, 'head_id', cls.__name__)!r} ({_where(cls)})"


@contextlib.contextmanager
def head_code(head: Any, call: str) -> Iterator[None]:
    """Run a fusion head's own code (`call` names it: "loss", "distances", ...): whatever it raises,
    but clipclap's own errors and interrupts, becomes one HeadContractError naming the head and
    the call, not a traceback (a run stops with its last good checkpoint, as on a bad loss)."""
    try:
        yield
    except ClipclapError:
        raise
    except Exception as e:  # a plugin's code may raise anything
        raise HeadContractError(f"{head_origin(head)}: {call} raised {type(e).__name__}: {e}") from None


def encoder_origin(encoder: Any) -> str:
    """'encoder NAME (module M, distribution D V)'."""
    cls = encoder if isinstance(encoder, type) else type(encoder)
    return f"encoder {getattr(encoder, 'encoder_id', cls.__name__)!r} ({_where(cls)})"


def _where(cls: type) -> str:
    """'module M, distribution D V' of a plugin class."""
    module = cls.__module__
    dists = _distributions().get(module.split(".")[0], [])
    where = f"module {module}"
    if dists:
        try:
            where += f", distribution {dists[0]} {importlib.metadata.version(dists[0])}"
        except importlib.metadata.PackageNotFoundError:
            where += f", distribution {dists[0]}"
    return where


def _fail(head: Any, expected: str, came: str) -> HeadContractError:
    return HeadContractError(f"{head_origin(head)} broke its contract\n  expected: {expected}\n  came: {came}")


def _describe(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def check_distances(head: Any, dists: Any, samples: int, classes: int) -> dict[str, torch.Tensor]:
    """`distances(...)` must give {"both": (N, C), optional "audio"/"video": (N, C)}, finite,
    floating point. Returns `dists`; raises HeadContractError naming the first break."""
    import torch

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
    import torch

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


def check_stacked_loss(head: Any, result: Any, runs: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A stacked model's `loss(...)` (`FusionHead.stacked`) must give what `loss` gives, with one
    value per run: (a (runs,) tensor with a gradient, {name: (runs,) tensor})."""
    import torch

    expected = (f"stacked loss as (total, {{name: part}}): total a tensor of shape ({runs},) with a gradient, "
                f"each part of shape ({runs},)")
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise _fail(head, expected, _describe(result))
    total, parts = result
    if not isinstance(total, torch.Tensor) or tuple(total.shape) != (runs,):
        raise _fail(head, expected, f"total is {_describe(total)}")
    if not total.requires_grad:
        raise _fail(head, expected, "total has no gradient (computed without the stacked parameters, or detached)")
    for name, part in parts.items():
        if not isinstance(part, torch.Tensor) or tuple(part.shape) != (runs,):
            raise _fail(head, expected, f"part {name!r} is {_describe(part)}")
    return total, parts


def check_label_parts(head_cls: Any, params: Any) -> tuple[str, ...]:
    """`label_parts(params)` must name some of LABEL_PARTS, in that order."""
    needed = tuple(head_cls.label_parts(params))
    if not needed or needed != tuple(n for n in LABEL_PARTS if n in needed):
        raise _fail(head_cls, f"label_parts() naming some of {', '.join(LABEL_PARTS)}, in that order",
                    ", ".join(map(str, needed)) or "none")
    return needed


def _encoder_fail(encoder: Any, expected: str, came: str) -> EncoderContractError:
    return EncoderContractError(f"{encoder_origin(encoder)} broke its contract\n  expected: {expected}\n  came: {came}")


def check_encoded(encoder: Any, out: Any, items: int) -> np.ndarray:
    """`encode_batch(items)` must give a float array (len(items), encoder.dim); returned as float32.
    Non-finite rows are the caller's to handle (extraction marks such a video failed)."""
    expected = f"encode_batch giving a float array of shape ({items}, {encoder.dim})"
    if not isinstance(out, np.ndarray) or out.dtype.kind != "f" or out.shape != (items, encoder.dim):
        raise _encoder_fail(encoder, expected, _describe(out))
    return out.astype(np.float32, copy=False)


def check_label_embedding(encoder: Any, out: Any) -> np.ndarray:
    """`label_embedding(prompts)` must give one finite float vector (encoder.dim,) per class."""
    expected = f"label_embedding giving a finite float vector of shape ({encoder.dim},)"
    if not isinstance(out, np.ndarray) or out.dtype.kind != "f" or out.shape != (encoder.dim,):
        raise _encoder_fail(encoder, expected, _describe(out))
    if not np.isfinite(out).all():
        raise _encoder_fail(encoder, expected, "a vector holding NaN or infinite values")
    return out.astype(np.float32, copy=False)


# ---------------------------------------------------------------- registration
def _check_params(obj: Any, what: str) -> None:
    if not dataclasses.is_dataclass(getattr(obj, "Params", None)):
        raise ClipclapError(f"{what} must declare a `Params` dataclass")


def validate_adapter(cls: Any) -> None:
    """What `register_dataset_kinds` may register: a class with a `kind` and a `Params` dataclass."""
    if not isinstance(getattr(cls, "kind", None), str) or not cls.kind:
        raise ClipclapError(f"dataset adapter {cls!r} has no `kind`")
    if not isinstance(cls, type):
        raise ClipclapError(f"dataset kind {cls.kind!r}: register the class, not an instance")
    _check_params(cls, f"dataset adapter {cls.kind!r}")


def validate_encoder(enc: Any) -> None:
    """What `register_encoders` may register: an instance with `encoder_id`, `modality`, `dim`,
    `Params` and `encode_batch`."""
    if isinstance(enc, type):
        raise ClipclapError(f"encoder {enc.__name__}: register an instance (`register({enc.__name__}())`), "
                            "not the class")
    if not getattr(enc, "encoder_id", None) or not isinstance(enc.encoder_id, str):
        raise ClipclapError(f"encoder {enc!r} has no `encoder_id`")
    if getattr(enc, "modality", None) not in ("audio", "video", "text"):
        raise ClipclapError(f"encoder {enc.encoder_id!r}: modality must be audio, video or text")
    if isinstance(getattr(enc, "dim", None), bool) or not isinstance(getattr(enc, "dim", None), int) or enc.dim <= 0:
        raise ClipclapError(f"encoder {enc.encoder_id!r}: dim must be a positive integer")
    if not callable(getattr(enc, "encode_batch", None)):
        raise ClipclapError(f"encoder {enc.encoder_id!r} has no encode_batch(items)")
    _check_params(enc, f"encoder {enc.encoder_id!r}")


def validate_head(cls: Any) -> None:
    """What `register_heads` may register: a FusionHead class with `head_id`, `Params` and
    valid `train_defaults`."""
    from clipclap_cli.protocol import SettingError, checked_settings

    if not isinstance(cls, type):
        raise ClipclapError(f"fusion head {cls!r}: register the class, not an instance")
    if not getattr(cls, "head_id", None) or not isinstance(cls.head_id, str):
        raise ClipclapError(f"fusion head {cls!r} has no `head_id`")
    _check_params(cls, f"fusion head {cls.head_id!r}")
    for method in ("loss", "distances"):
        if not callable(getattr(cls, method, None)):
            raise ClipclapError(f"fusion head {cls.head_id!r} has no {method}()")
    try:
        checked_settings(getattr(cls, "train_defaults", {}))
    except SettingError as e:
        raise ClipclapError(f"fusion head {cls.head_id!r}: train_defaults"
                            + (f".{e.key}" if e.key else "") + f": {e}") from None


# ---------------------------------------------------------------- dataset formats
class DatasetContractError(ContractError):
    """A dataset format (adapter) returned something its contract does not allow."""


def adapter_origin(adapter: Any) -> str:
    """'dataset kind NAME (module M, distribution D V)'."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    return f"dataset kind {getattr(cls, 'kind', cls.__name__)!r} ({_where(cls)})"


def _dataset_fail(adapter: Any, expected: str, came: str) -> DatasetContractError:
    return DatasetContractError(f"{adapter_origin(adapter)} broke its contract\n  expected: {expected}\n  came: {came}")


def check_bundle_form(adapter: Any, bundle: Any) -> Any:
    """`load_features` must give a FeatureBundle of the documented types: lists of names, 1-d
    integer labels and partitions, 2-d float arrays of features and label embeddings. Values
    (lengths, ranges, finite numbers) are the import's to check, naming the dataset."""
    from clipclap_cli.api import FeatureBundle

    def fail(expected: str, came: str) -> DatasetContractError:
        return _dataset_fail(adapter, expected, came)

    if not isinstance(bundle, FeatureBundle):
        raise fail("load_features giving a clipclap_cli.FeatureBundle", _describe(bundle))
    for name in ("classes", "prompt_names", "ids"):
        value = getattr(bundle, name)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise fail(f"FeatureBundle.{name} a list of strings", _describe(value))
    if not bundle.classes:
        raise fail("FeatureBundle.classes naming at least one class", "an empty list")
    for name in ("labels", "partition"):
        value = getattr(bundle, name)
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
            raise fail(f"FeatureBundle.{name} a 1-d integer array", _describe(value))
    for field in ("features", "label_embeddings"):
        arrays = getattr(bundle, field)
        if not isinstance(arrays, dict):
            raise fail(f"FeatureBundle.{field} a dict of arrays", _describe(arrays))
        for name, value in arrays.items():
            if not isinstance(value, np.ndarray) or value.ndim != 2 or value.dtype.kind != "f":
                raise fail(f"FeatureBundle.{field}[{name!r}] a 2-d float array", _describe(value))
    if not isinstance(bundle.class_splits, dict) or not isinstance(bundle.provenance, dict):
        raise fail("FeatureBundle.class_splits and .provenance dicts",
                   f"{_describe(bundle.class_splits)} and {_describe(bundle.provenance)}")
    return bundle


def check_samples(adapter: Any, samples: Any) -> list:
    """`samples(videos)` must give a non-empty list of Sample with unique ids and string labels."""
    from clipclap_cli.api import Sample

    expected = "samples giving a non-empty list of Sample, ids unique"
    if not isinstance(samples, list) or not samples:
        raise _dataset_fail(adapter, expected, _describe(samples) + (" (empty)" if samples == [] else ""))
    bad = next((s for s in samples if not isinstance(s, Sample) or not isinstance(s.label, str)
                or not isinstance(s.id, str) or not s.id), None)
    if bad is not None:
        raise _dataset_fail(adapter, expected, f"an item {bad!r}"[:200])
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise _dataset_fail(adapter, expected, f"the id {twice!r} twice")
    return samples


def check_description(adapter: Any, samples: list, described: Any) -> dict:
    """`describe_samples(samples)` must give classes (holding every sample's label), as many
    prompt names, one partition per sample and class-split lists."""
    expected = ("describe_samples giving {classes, prompt_names (one per class), partition (one per sample), "
                "class_splits}, classes holding every label")
    keys = {"classes", "prompt_names", "partition", "class_splits"}
    if not isinstance(described, dict) or keys - set(described):
        came = _describe(described) + (f" without {', '.join(sorted(keys - set(described)))}"
                                       if isinstance(described, dict) else "")
        raise _dataset_fail(adapter, expected, came)
    classes = list(described["classes"])
    if len(described["prompt_names"]) != len(classes) or len(described["partition"]) != len(samples):
        raise _dataset_fail(adapter, expected, f"{len(described['prompt_names'])} prompt names for {len(classes)} "
                            f"classes, {len(described['partition'])} partitions for {len(samples)} samples")
    strays = sorted({s.label for s in samples} - set(classes))
    if strays:
        raise _dataset_fail(adapter, expected, f"labels outside the classes: {', '.join(map(repr, strays[:3]))}")
    return described
