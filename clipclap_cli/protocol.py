"""Protocol settings shared by training, runs and reports (no torch: `clipclap report` stays quick)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

#: ClipClap's bias grid, linspace(0, 5, 76); AVCA-GZSL's was (0, 3, 16).
DEFAULT_BETA_GRID = (0.0, 5.0, 76)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training stage. Fields added later default to the earlier behaviour, so
    a run's recorded settings can always be completed (`completed_train_settings`)."""

    epochs: int
    lr: float
    batch_size: int = 64
    batches_per_epoch: int = 300
    seed: int = 42
    weight_decay: float = 1e-5
    device: str = "cpu"
    replay_forward: bool = True
    lr_scheduler: bool = True
    beta_grid: tuple[float, float, int] = DEFAULT_BETA_GRID
    "The bias grid (start, stop, points): ClipClap's 0..5 in 76 points; AVCA-GZSL used 0..3 in 16"


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


def completed_train_settings(train: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded training settings with the defaults of settings added since (as JSON
    holds them); keys this version does not know (a newer clipclap's) are kept as they are."""
    defaults = dataclasses.asdict(TrainConfig(epochs=0, lr=0.0))
    return json.loads(json.dumps(defaults | train))
