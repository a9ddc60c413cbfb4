"""The public face of clipclap for plugin authors: every name a plugin needs, in one list
(`__all__`; `clipclap_cli` re-exports the same names). The built-in plugins import from here
only; every other module of clipclap is internal and may move (docs/architecture.md). It is
also the Python API of notebooks and scripts: `open_store` and `load_model` (docs/python-api.md).

The three plugin contracts (DatasetAdapter, Encoder, FusionHead) and their small dataclasses
are defined here or below; the other public names live where the core uses them and are
re-exported lazily (`_ELSEWHERE`), on first use: this module must not import torch, pluggy or
the registries when it is imported, because `clipclap --help` loads every plugin.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from clipclap_cli.data.datasets_toml import DatasetEntry

Modality = Literal["audio", "video", "text"]

#: The five video partitions of the two-stage protocol (SPEC.md "Benchmarks and splits").
PARTITIONS = (
    "stage_1_train",
    "stage_1_val_seen",
    "stage_1_val_unseen",
    "stage_2_test_seen",
    "stage_2_test_unseen",
)

#: The label-embedding blocks a head can receive, in concatenation order ([CLIP | CLAP]).
LABEL_PARTS = ("clip", "clap")


@dataclass(frozen=True)
class Sample:
    """One video of a dataset, as an adapter enumerates it for extraction."""

    id: str
    label: str
    video_path: Path | None = None
    audio_path: Path | None = None


@dataclass(frozen=True)
class FeatureDims:
    """Widths of the inputs a fusion head receives.

    `text_parts` names the label-embedding blocks in concatenation order, e.g.
    (("clip", 512), ("clap", 1024)); `text` is their sum.
    """

    audio: int = 1024
    video: int = 512
    text_parts: tuple[tuple[str, int], ...] = (("clip", 512), ("clap", 1024))

    @property
    def text(self) -> int:
        return sum(d for _, d in self.text_parts)

    def text_slice(self, *parts: str) -> slice:
        """The columns of the label-embedding matrix that hold `parts` (adjacent, in that order)."""
        columns, start = {}, 0
        for name, dim in self.text_parts:
            columns[name] = (start, start + dim)
            start += dim
        missing = [part for part in parts if part not in columns]
        if missing or not parts:
            raise KeyError(f"the label embeddings {self.text_parts} lack {', '.join(missing) or 'the parts asked for'}")
        spans = [columns[part] for part in parts]
        if any(a[1] != b[0] for a, b in pairwise(spans)):
            raise KeyError(f"the label embeddings {self.text_parts} do not hold {', '.join(parts)} side by side")
        return slice(spans[0][0], spans[-1][1])


@dataclass
class FeatureBundle:
    """Everything a dataset adapter hands to the store: videos, labels, features, label embeddings.

    Attributes:
        classes: original class names, index = class id.
        prompt_names: the name written into prompts for each class (same order as `classes`).
        ids: video ids (N).
        labels: class id per video (N,) int.
        features: modality ("video", "audio") -> float32 (N, dim).
        label_embeddings: text encoder ("clip", "clap") -> float32 (C, dim), row = class id.
        partition: index into PARTITIONS per video, or -1 when the source assigns none (N,) int8.
        class_splits: split name -> partition -> class names (the class-split txt files), if any.
        provenance: free-form description of where the data came from.
    """

    classes: list[str]
    prompt_names: list[str]
    ids: list[str]
    labels: np.ndarray
    features: dict[str, np.ndarray]
    label_embeddings: dict[str, np.ndarray]
    partition: np.ndarray
    class_splits: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KindExample:
    """A tiny dataset of one format, written by `DatasetAdapter.example` for the contract kit
    (`clipclap plugins check`, `clipclap_cli.testing`)."""

    table: dict[str, Any]
    "The [datasets.NAME] table a user would write for it (`kind` may be left out)"
    root: Path | None = None
    "What `clipclap import NAME ROOT` is given (formats that implement `load_features`)"
    videos: Path | None = None
    "What `clipclap extract NAME --videos DIR` is given (formats that implement `samples`)"


class DatasetAdapter(ABC):
    """A dataset *format*. `datasets.toml` entries name it by `kind`.

    Subclasses set `kind`, may declare a `Params` dataclass for extra TOML keys, and implement
    `load_features` (released-feature trees, generators) and/or `samples` (videos to extract).
    """

    kind: ClassVar[str]
    description: ClassVar[str] = ""

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, entry: DatasetEntry, params: Any):
        self.entry, self.params = entry, params

    @classmethod
    def example(cls, folder: Path) -> KindExample | None:
        """Write a tiny dataset of this format into `folder` (empty, a temporary folder) and say
        how to read it, so that the contract kit can exercise `load_features` / `samples` in
        seconds. Default: None, and the kit checks the registration alone."""
        return None

    def load_features(self, root: Path | None, **options: Any) -> FeatureBundle:
        """Read (or generate) a FeatureBundle; raise ImportDataError naming any bad file."""
        from clipclap_cli.errors import ImportDataError

        raise ImportDataError(f"dataset kind {self.kind!r} has no feature import (it is a video format)")

    def samples(self, videos: Path, **options: Any) -> list[Sample]:
        """The videos to extract features from (`clipclap extract --videos DIR`); options such as
        `split_dir` come from the command line (a format may default them from its Params). Raise
        on an option the format cannot honour rather than ignore it."""
        from clipclap_cli.errors import ClipclapError

        raise ClipclapError(f"dataset kind {self.kind!r} holds no videos to extract features from")

    def describe_samples(self, samples: list[Sample], **options: Any) -> dict[str, Any]:
        """Classes (index = class id), their prompt names, each sample's partition (index into
        PARTITIONS, -1 for none) and class-split lists for the extracted dataset. Default: the
        sorted labels, named as they are, no partitions."""
        classes = sorted({s.label for s in samples})
        return {"classes": classes, "prompt_names": list(classes),
                "partition": [-1] * len(samples), "class_splits": {}}


class Encoder(ABC):
    """A feature extractor. The constructor must be cheap: weights load on first use."""

    encoder_id: ClassVar[str]
    modality: ClassVar[Modality]
    dim: ClassVar[int]
    batch_size: ClassVar[int] = 32
    description: ClassVar[str] = ""
    contract_params: ClassVar[dict[str, Any]] = {}
    """Params the contract kit (`clipclap plugins check`) builds the encoder with: settings that
    need no weights (a tiny random-weight model), since no weights are downloaded to check it"""

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params: Any = None):
        """The constructor contract: an instance of `Params` (None: its defaults); cheap, no
        weights loaded (load them on first use). Subclasses that keep more state call this first."""
        self.params = params if params is not None else self.Params()

    @abstractmethod
    def encode_batch(self, items: list[Any]) -> np.ndarray:
        """Encode a batch of items into a float32 array (B, dim)."""

    def provenance(self) -> dict[str, Any]:
        """What a reviewer needs to know where the features came from: the model, its weights
        (file, sha256, whether random), library versions. Recorded with every feature array
        `extract` writes; a new extraction into the same array must give the same. Default: {}."""
        return {}

    def check_weights(self) -> None:
        """Check, without loading them, that the weights can be had (a checkpoint file that
        exists, downloads allowed where needed); raise a ClipclapError that names the fix.
        `extract` and `embed` call it before any work. Default: nothing to check."""


def offers_label_embeddings(encoder: Any) -> bool:
    """Whether `encoder` has `label_embedding(prompts)`, what `clipclap embed` runs."""
    return callable(getattr(encoder, "label_embedding", None))


_ELSEWHERE = {
    # the fusion-head contract and its building blocks (they import torch)
    **dict.fromkeys(("FusionHead", "Batch", "Block", "Dropout", "MODES", "fbrd"), "clipclap_cli.plugins.fusion_head"),
    # building blocks of a head's stacked form (`FusionHead.stacked`)
    **dict.fromkeys(("StackedBlock", "StackedParameters", "per_run_mse"), "clipclap_cli.plugins.stacked_blocks"),
    "hookimpl": "clipclap_cli.plugins.hookspecs",
    **dict.fromkeys(("create_head", "get_encoder", "get_head", "list_dataset_kinds", "list_encoders", "list_heads"),
                    "clipclap_cli.plugins.registry"),
    "check_ranges": "clipclap_cli.params",
    **dict.fromkeys(("ClipclapError", "ConfigError", "ImportDataError", "MissingExtraError", "ParamError"),
                    "clipclap_cli.errors"),
    **dict.fromkeys(("ContractError", "EncoderContractError", "HeadContractError"), "clipclap_cli.plugins.contracts"),
    # helpers the built-in plugins use, for any plugin that reads the same kind of data
    "need": "clipclap_cli.extras",
    **dict.fromkeys(("ClassResolver", "read_class_split"), "clipclap_cli.data.splits"),
    "torch_load_failure": "clipclap_cli.runs.checkpoints",
    # the Python API for notebooks and scripts (docs/python-api.md)
    "open_store": "clipclap_cli.python_api.stored",
    "load_model": "clipclap_cli.python_api.model",
}
"Public names defined elsewhere -> their module, imported on first use"

__all__ = [
    "LABEL_PARTS", "PARTITIONS", "DatasetAdapter", "Encoder", "FeatureBundle", "FeatureDims", "KindExample",
    "Modality", "Sample", *_ELSEWHERE,
]


def __getattr__(name: str) -> Any:
    """A public name defined elsewhere, imported on first use (torch only for the head's names)."""
    module = _ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ELSEWHERE})
