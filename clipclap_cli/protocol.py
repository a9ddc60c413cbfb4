"""The protocol's definitions shared by data, training, evaluation and reports: the bias grid, the
training settings and how their layers merge, the units of run files (no torch: `clipclap report`
stays quick). The metrics are `metric_table.py`'s."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clipclap_cli.errors import ClipclapError

FILE_UNITS = {"accuracy": "fraction", "epoch": "counted from 1"}
"What every JSON file of a run says its numbers are (`units`): accuracies as fractions, epochs from 1"

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

    def checked(self, where: str = "training settings") -> TrainSettings:
        """These settings with every field of its type, finite and in range, else a SettingError
        naming the field and `where` (`check_train_settings`, the one check of them)."""
        return check_train_settings({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, where)


LAYERED_SETTINGS = tuple(f.name for f in dataclasses.fields(TrainSettings) if f.name not in ("device", "beta_grid"))
"""Settings a dataset (datasets.toml `train`, `head_train.<head>`) or a head (`train_defaults`)
may set; the device and the bias grid are the command line's"""

#: The whole-number settings and the command line's counts beside them (`--seeds`, `--threads`,
#: `--jobs`): (lowest, highest) allowed. The upper bounds are far beyond any real run; they stop
#: a typo (`--epochs` with 120 digits) before it starts work that cannot finish or that fails
#: halfway (a seed past 2**32 - 1, a batch no allocator can hold).
COUNT_RANGES: dict[str, tuple[int, int]] = {
    "epochs": (1, 100_000),
    "batches_per_epoch": (1, 10_000_000),
    "batch_size": (1, 1_000_000),
    "seed": (0, 2**32 - 1),
    "seeds": (1, 10_000),
    "threads": (1, 4096),
    "jobs": (1, 4096),
}

#: The bias grid's bounds: 0 <= START <= STOP <= MAX_BETA, 1 <= POINTS <= MAX_GRID_POINTS. A bias
#: is added to float32 distances: past 1e6 it only says "always seen"; 100,000 points is a grid
#: 1,300 times finer than ClipClap's.
MAX_BETA = 1e6
MAX_GRID_POINTS = 100_000


class SettingError(ClipclapError):
    """A layer of training settings names an unknown setting or holds a bad value; `key` says
    which (None where the message names it), `problem` what is wrong with it."""

    def __init__(self, key: str | None, message: str, problem: str | None = None):
        super().__init__(message)
        self.key = key
        self.problem = problem or message


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def grid_problem(grid: Any) -> str | None:
    """What is wrong with a bias grid (START, STOP, POINTS) (a tuple, or a list as JSON holds
    it), or None: START and STOP finite with 0 <= START <= STOP <= MAX_BETA, POINTS a whole
    number from 1 to MAX_GRID_POINTS."""
    if not isinstance(grid, tuple | list) or len(grid) != 3:
        return f"must be START:STOP:POINTS, not {_shown(grid)}"
    start, stop, points = grid
    if not (_real(start) and _real(stop) and math.isfinite(start) and math.isfinite(stop)):
        return f"START and STOP must be finite numbers, not {_shown(start)} and {_shown(stop)}"
    if not 0 <= start <= stop <= MAX_BETA:
        return f"needs 0 <= START <= STOP <= {MAX_BETA:g}, not START {start:g} and STOP {stop:g}"
    if not _whole(points) or not 1 <= points <= MAX_GRID_POINTS:
        return f"POINTS must be a whole number from 1 to {MAX_GRID_POINTS}, not {_shown(points)}"
    return None


def parse_beta_grid(text: str, option: str = "--beta-grid") -> tuple[float, float, int]:
    """'START:STOP:POINTS' -> (start, stop, points), e.g. '0:5:76' (ClipClap) or '0:3:16'
    (AVCA-GZSL), checked (`grid_problem`); a SettingError naming `option` otherwise."""
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        grid = (float(parts[0]), float(parts[1]), _whole_number(parts[2]))
    except (ValueError, OverflowError):
        raise SettingError("beta_grid", f"{option} {_shown(text)}: expected START:STOP:POINTS (POINTS a whole "
                           "number), e.g. 0:5:76", "expected START:STOP:POINTS") from None
    problem = grid_problem(grid)
    if problem:
        raise SettingError("beta_grid", f"{option} {_shown(text)}: {problem}", problem)
    return grid


def _whole_number(text: str) -> int:
    """A whole number written as one ('76', not '76.0' or '1e30')."""
    text = text.strip()
    if not text.lstrip("+-").isdigit() or len(text) > 30:
        raise ValueError(text)
    return int(text)


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with the value of a training setting (a TrainSettings field, as typed or as
    JSON holds it) or of one of the command line's counts beside them (`COUNT_RANGES`), or None:
    its type (a whole number, a number, true/false), then its range (finite, within bounds).
    Names no field (the caller says which, and where it came from). Names it does not know pass."""
    return _type_problem(name, value) or _range_problem(name, value)


def check_options(values: Mapping[str, Any]) -> None:
    """The command line's numbers (`{"epochs": 3, "threads": 2, "beta_grid": (0, 5, 76)}`, None
    for an option not given) checked before any work (`setting_problem`): a SettingError
    `--epochs must be at least 1, not 0` naming the first bad option. For commands to call first,
    before they read or write anything (`demo` before it generates, `train` with `--threads`)."""
    for key, value in values.items():
        problem = None if value is None else setting_problem(key, value)
        if problem:
            raise SettingError(key, _joined(f"--{key.replace('_', '-')}", problem), problem)
    seed, seeds = values.get("seed"), values.get("seeds")
    if seed is not None and seeds is not None and seed + seeds - 1 > COUNT_RANGES["seed"][1]:
        problem = f"and --seeds {seeds} run seeds up to {seed + seeds - 1}, past {COUNT_RANGES['seed'][1]}"
        raise SettingError("seed", f"--seed {seed} {problem}", problem)


def _type_problem(name: str, value: Any) -> str | None:
    if name in COUNT_RANGES and not _whole(value):
        return f"expected a whole number, got {_shown(value)}"
    if name in ("lr", "weight_decay") and not _real(value):
        return f"expected a number, got {_shown(value)}"
    if name in ("replay_forward", "lr_scheduler") and not isinstance(value, bool):
        return f"expected true or false, got {_shown(value)}"
    if name == "device" and (not isinstance(value, str) or not value):
        return f"expected a device name (cpu, cuda, cuda:N), got {_shown(value)}"
    return None


def _range_problem(name: str, value: Any) -> str | None:
    if name in COUNT_RANGES:
        low, high = COUNT_RANGES[name]
        if value < low:
            return f"must be at least {low}, not {value}"
        if value > high:
            return f"must be at most {high}, not {_shown(value)}"
    if name == "lr" and not value > 0:  # `not >` also refuses NaN
        return f"must be positive, not {value}"
    if name in ("lr", "weight_decay") and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if name == "weight_decay" and value < 0:
        return f"must be at least 0, not {value}"
    if name == "beta_grid":
        return grid_problem(value)
    return None


def _joined(label: str, problem: str) -> str:
    """`--epochs must be at least 1, not 0`; `spec.train: epochs: expected a whole number, got '3'`."""
    return f"{label}: {problem}" if problem.startswith("expected") else f"{label} {problem}"


def _normalised(settings: TrainSettings) -> TrainSettings:
    """`settings` with its numbers as their fields' types (an int lr as float, a JSON list grid as a tuple)."""
    start, stop, points = settings.beta_grid
    return dataclasses.replace(settings, lr=float(settings.lr), weight_decay=float(settings.weight_decay),
                               beta_grid=(float(start), float(stop), int(points)))


def check_train_settings(values: Mapping[str, Any], where: str = "training settings",
                         name_of: Any = None) -> TrainSettings:
    """The one check of a run's training settings, wherever they were put together (the layers
    of `merge_settings`, a run's config.json read back): `values` (field -> value, as typed or as
    JSON holds them; a field left out takes its default) as a TrainSettings whose every field is
    of its type, finite and in range (`setting_problem`), else a SettingError naming the field.

    Args:
        values: the settings, by field name.
        where: what they are, for the message: `config.json spec.train` gives
            "config.json spec.train: epochs must be at least 1, not -3".
        name_of: optional `field -> label` for the message instead (`--epochs` for a value given
            on the command line); its label is followed by the problem.

    Raises:
        SettingError: a field unknown, of the wrong type or out of range (`key` names it).
    """
    def label(key: str) -> str:
        return name_of(key) if name_of is not None else f"{where}: {key}"

    if not isinstance(values, Mapping):
        raise SettingError(None, f"{where}: expected a table of training settings, not {_shown(values)}")
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    for key in values:
        if key not in known:
            raise SettingError(key, f"{label(key)}: not a training setting (valid: {', '.join(sorted(known))})",
                               "unknown")
    for key, value in values.items():
        problem = setting_problem(key, value)
        if problem:
            raise SettingError(key, _joined(label(key), problem), problem)
    return _normalised(TrainSettings(**values))


def checked_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """A layer of training settings (datasets.toml `train`, a head's `train_defaults`), each
    value of its setting's type and in range (`setting_problem`); an int where a float is
    expected becomes a float. A SettingError's message is the problem alone (the caller names
    the layer): `key` names the setting, or the message does (a value of the wrong type)."""
    if not isinstance(values, Mapping):
        raise SettingError(None, f"expected a table of training settings, got {_shown(values)}")
    unknown = sorted(set(values) - set(LAYERED_SETTINGS))
    if unknown:
        raise SettingError(unknown[0], f"unknown; valid: {', '.join(sorted(LAYERED_SETTINGS))}")
    for key, value in values.items():
        problem = _type_problem(key, value)
        if problem:  # the message names the setting: `key` None keeps callers' "LAYER: MESSAGE"
            raise SettingError(None, _joined(key, problem), problem)
        problem = _range_problem(key, value)
        if problem:
            raise SettingError(key, problem)
    typed = _normalised(TrainSettings(**values))
    return {key: getattr(typed, key) for key in values}


def merge_settings(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[TrainSettings, dict[str, str]]:
    """The settings of `layers` ((source, values), later winning key by key, None values skipped)
    over the protocol's defaults, and the source of each setting ('protocol' where no layer set it).
    The result is checked (`check_train_settings`): a bad value is a SettingError naming the
    setting and the layer it came from (`--epochs` for the source "command line")."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if value is not None:
                values[key], sources[key] = value, source

    def name_of(key: str) -> str:
        source = sources.get(key, "protocol")
        return f"--{key.replace('_', '-')}" if source == "command line" else f"{source}: {key}"

    settings = check_train_settings(values, name_of=name_of)
    return settings, {f.name: sources.get(f.name, "protocol") for f in dataclasses.fields(TrainSettings)}


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
