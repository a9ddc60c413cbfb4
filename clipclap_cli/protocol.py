"""The protocol's definitions shared by data, training, evaluation and reports: the metrics, the
bias grid, the training settings and how their layers merge (no torch: `clipclap report` stays
quick)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clipclap_cli.errors import ClipclapError
from clipclap_cli.params import build_params

#: The test metrics (SPEC.md "Evaluation"): seen and unseen accuracy, their harmonic mean, ZSL.
METRICS = ("seen", "unseen", "hm", "zsl")
LABELS = {"seen": "S", "unseen": "U", "hm": "HM", "zsl": "ZSL"}

#: ClipClap's bias grid, linspace(0, 5, 76); AVCA-GZSL's was (0, 3, 16).
DEFAULT_BETA_GRID = (0.0, 5.0, 76)


@dataclass(frozen=True)
class TrainSettings:
    """The training settings of a run: the one typed, frozen type for them. A run's value of each
    comes from `merge_settings`: the protocol's default here, the dataset's (datasets.toml
    `train`), the head's (`FusionHead.train_defaults`), the dataset's for that head
    (`head_train.<head>`), then the command line. Fields added later default to the earlier
    behaviour, so a run's recorded settings can always be completed (`completed_train_settings`)."""

    epochs: int = 15
    lr: float = 1e-4
    batch_size: int = 64
    batches_per_epoch: int = 300
    seed: int = 42
    weight_decay: float = 1e-5
    device: str = "cpu"
    replay_forward: bool = True
    lr_scheduler: bool = True
    beta_grid: tuple[float, float, int] = DEFAULT_BETA_GRID
    "The bias grid (start, stop, points): ClipClap's 0..5 in 76 points; AVCA-GZSL used 0..3 in 16"


LAYERED_SETTINGS = tuple(f.name for f in dataclasses.fields(TrainSettings) if f.name not in ("device", "beta_grid"))
"""Settings a dataset (datasets.toml `train`, `head_train.<head>`) or a head (`train_defaults`)
may set; the device and the bias grid are the command line's"""


class SettingError(ClipclapError):
    """A layer of training settings names an unknown setting or holds a bad value; `key` says which."""

    def __init__(self, key: str | None, message: str):
        super().__init__(message)
        self.key = key


def checked_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """A layer of training settings, typed (`build_params`) and checked (`setting_problem`)."""
    if not isinstance(values, Mapping):
        raise SettingError(None, f"expected a table of training settings, got {values!r}")
    unknown = sorted(set(values) - set(LAYERED_SETTINGS))
    if unknown:
        raise SettingError(unknown[0], f"unknown; valid: {', '.join(sorted(LAYERED_SETTINGS))}")
    try:
        typed = build_params(TrainSettings, values)
    except ClipclapError as e:
        raise SettingError(None, str(e)) from None
    for key in values:
        problem = setting_problem(key, getattr(typed, key))
        if problem:
            raise SettingError(key, problem)
    return {key: getattr(typed, key) for key in values}


def merge_settings(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[TrainSettings, dict[str, str]]:
    """The settings of `layers` ((source, values), later winning key by key, None values skipped)
    over the protocol's defaults, and the source of each setting ('protocol' where no layer set it)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if value is not None:
                values[key], sources[key] = value, source
    settings = TrainSettings(**values)
    return settings, {f.name: sources.get(f.name, "protocol") for f in dataclasses.fields(TrainSettings)}


#: Training settings that must be at least 1, and those that must be positive.
_COUNTS = ("epochs", "batch_size", "batches_per_epoch", "seeds")
_POSITIVE = ("lr",)


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with a training setting's value (from datasets.toml or the command line), or None."""
    if name in _COUNTS and value < 1:
        return f"must be at least 1, not {value}"
    if name in _POSITIVE and not value > 0:  # `not >` also refuses NaN
        return f"must be positive, not {value}"
    return None


#: Training settings whose dataset (and head) defaults a run records in its `protocol_defaults`
#: when it departs from them, so that the departure names its folder and report row.
SCHEDULE_SETTINGS = ("epochs", "lr", "batch_size", "batches_per_epoch")


def protocol_variant(spec: dict[str, Any]) -> list[str]:
    """Protocol settings of a run spec that differ from the faithful defaults (of this head on
    this dataset: `protocol_defaults`), as labels (`epochs=3`, `beta-grid=0:3:16`,
    `no-replay-forward`); they name run folders and report rows, so such runs never mix with
    faithful ones (nor sit beside the paper's rows as if they were)."""
    train = completed_train_settings(spec["train"])
    defaults = spec.get("protocol_defaults", {})
    out = [f"{key.replace('_', '-')}={train[key]:g}" for key in SCHEDULE_SETTINGS
           if key in defaults and train[key] != defaults[key]]
    if list(train["beta_grid"]) != list(DEFAULT_BETA_GRID):
        out.append("beta-grid=" + ":".join(f"{x:g}" for x in train["beta_grid"]))
    scheduler_default = defaults.get("lr_scheduler", True)
    if train["lr_scheduler"] != scheduler_default:
        out.append("lr-scheduler" if scheduler_default is False else "no-lr-scheduler")
    if not train["replay_forward"]:
        out.append("no-replay-forward")
    if spec.get("legacy_label_order"):
        out.append("legacy-label-order")
    return out


def run_name_parts(spec: dict[str, Any]) -> list[str]:
    """What sets a run apart from the faithful run of its head: the parameters given on the
    command line (`k=v`, sorted) and the protocol departures (`protocol_variant`). The one
    naming of runs: run folders join them after the head with commas (`clipclap,epochs=3`),
    report rows in brackets (`clipclap (epochs=3)`). Runs written before `variant` was recorded
    name all their parameters."""
    params = spec.get("variant", spec["params"])
    return [f"{k}={v}" for k, v in sorted(params.items())] + protocol_variant(spec)


def completed_train_settings(train: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded training settings with the defaults of settings added since (as JSON
    holds them); keys this version does not know (a newer clipclap's) are kept as they are."""
    defaults = dataclasses.asdict(TrainSettings(epochs=0, lr=0.0))
    return json.loads(json.dumps(defaults | train))
