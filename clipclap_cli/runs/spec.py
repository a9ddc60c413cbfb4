"""What defines a run (`RunSpec`, as config.json records it) and the fusion head it builds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from clipclap_cli.data.protocol_data import LABEL_PARTS
from clipclap_cli.errors import RunError
from clipclap_cli.plugins.contracts import check_label_parts as contract_label_parts
from clipclap_cli.plugins.registry import create_head
from clipclap_cli.protocol import TrainSettings
from clipclap_cli.store.feature_store import FeatureStore


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run's numbers (seed included)."""

    dataset: str
    split: str
    head: str
    params: dict[str, Any]
    dims: dict[str, Any]
    train: TrainSettings
    variant: dict[str, Any] = dataclasses.field(default_factory=dict)
    "The parameters given on the command line: they name the run folder and the report's row"
    legacy_label_order: bool = False
    "Give classes the reference's sorted-key label embeddings (BASELINES.md 1.3)"
    protocol_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    "Defaults the run departs from (`--epochs 3`), or the head's on this dataset where not the protocol's"
    sources: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)
    "Where each training setting came from (`merge_settings`): config.json's `settings_sources`, not the spec"

    @property
    def label_parts(self) -> tuple[str, ...]:
        """The label embeddings the run reads, side by side (those the store held when it started)."""
        return tuple(name for name, _ in self.dims["text_parts"])

    def data_request(self) -> dict[str, Any]:
        """What the run reads (`DatasetReads.read`'s arguments): its dataset, split, device, label
        order and label embeddings."""
        return {"dataset": self.dataset, "split": self.split, "device": self.train.device,
                "legacy_label_order": self.legacy_label_order, "label_parts": self.label_parts}

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        del out["sources"]  # what made the settings, not what they are: recorded beside the spec
        if not self.protocol_defaults:
            del out["protocol_defaults"]  # the usual case: specs (and run folders) as before the field existed
        return out


def _dims_from(spec: RunSpec):
    from clipclap_cli.api import FeatureDims

    d = spec.dims
    return FeatureDims(audio=d["audio"], video=d["video"], text_parts=tuple((k, v) for k, v in d["text_parts"]))


def store_dims(store: FeatureStore, dataset: str) -> dict[str, Any]:
    """Input widths of a dataset as the store holds them (what a head is built for): its audio and
    video features, and the label embeddings it has, in LABEL_PARTS order. A run records these, and
    reads the same label embeddings whenever it resumes or is evaluated."""
    feats, labels = store.feature_names(dataset), store.label_embedding_names(dataset)
    missing = [n for n in ("audio", "video") if n not in feats]
    if missing:
        raise RunError(f"dataset {dataset!r} in {store} lacks {' and '.join(missing)} features "
                       "(run `clipclap import` or `clipclap extract` first)")
    return {"audio": feats["audio"]["shape"][1], "video": feats["video"]["shape"][1],
            "text_parts": [[n, labels[n][1]] for n in LABEL_PARTS if n in labels]}


def check_label_parts(store: object, dataset: str, dims: dict[str, Any], head_cls, params) -> None:
    """Refuse a head whose label embeddings (`label_parts`) the dataset lacks (`dims`: what the
    store holds; `store`: where it is, for the message), in one line that says which to compute;
    a plugin that names an unknown part is refused the same way."""
    needed = contract_label_parts(head_cls, params)
    held = [n for n, _ in dims["text_parts"]]
    lacking = [n for n in needed if n not in held]
    if lacking:
        raise RunError(f"head {head_cls.head_id!r} reads {' and '.join(needed)} label embeddings; dataset {dataset!r} "
                       f"in {store} has {' and '.join(held) or 'none'} (run "
                       + " and ".join(f"`clipclap embed {dataset} --encoder {n}`" for n in lacking) + " first)")


def build_head(spec: RunSpec, pm=None):
    return create_head(spec.head, _dims_from(spec), spec.params, pm=pm)


def checked_head(spec: RunSpec, pm=None):
    """`build_head` for input from the command line: whatever a plugin's constructor raises
    becomes one error line that names the head and its parameters."""
    from clipclap_cli.errors import ClipclapError, ParamError

    try:
        return build_head(spec, pm)
    except ClipclapError:
        raise
    except Exception as e:  # a plugin's constructor may raise anything
        raise ParamError(f"head {spec.head!r} cannot be built with {spec.params or 'its defaults'} "
                         f"({type(e).__name__}: {e})") from None
