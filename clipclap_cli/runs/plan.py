"""From what `clipclap train` was asked to the runs it trains: settings merged and checked
before any folder is written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipclap_cli.devices import check_device
from clipclap_cli.errors import RunError
from clipclap_cli.protocol import SCHEDULE_SETTINGS, merge_settings, parse_beta_grid, setting_problem
from clipclap_cli.runs.folder import check_run_folder, default_run_dir
from clipclap_cli.runs.spec import RunSpec, check_label_parts, checked_head
from clipclap_cli.store.locations import StoreLocation


@dataclass(frozen=True)
class RunRequest:
    """What `clipclap train` was asked for. A training setting left None is not on the command
    line: the head's, the dataset's or the protocol's value applies (`merge_settings`)."""

    heads: tuple[str, ...] = ("clipclap",)
    params: tuple[str, ...] = ()
    "Head parameters as KEY=VALUE (`-p`), applied to every head"
    seed: int | None = None
    seeds: int = 1
    split: str | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    batches_per_epoch: int | None = None
    device: str = "cpu"
    replay_forward: bool | None = None
    lr_scheduler: bool | None = None
    beta_grid: tuple[float, float, int] | None = None
    legacy_label_order: bool = False

    def command_line(self) -> dict[str, Any]:
        """The training settings given on the command line: the last layer of `merge_settings`."""
        given = {"seed": self.seed, "epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size,
                 "batches_per_epoch": self.batches_per_epoch, "device": self.device,
                 "replay_forward": self.replay_forward, "lr_scheduler": self.lr_scheduler,
                 "beta_grid": None if self.beta_grid is None else tuple(self.beta_grid)}
        return {k: v for k, v in given.items() if v is not None}


TRAINING_ONLY = (*SCHEDULE_SETTINGS, "replay_forward", "lr_scheduler")
"Settings a training-free head (`FusionHead.training_free`) does not take from the command line"


def check_request(entry, request: RunRequest, pm=None) -> None:
    """Refuse, before the store is read, what is wrong with the request itself: a setting out of
    range, a head that datasets.toml names but no plugin registers, a device this machine lacks."""
    from clipclap_cli.errors import ConfigError, UnknownNameError
    from clipclap_cli.plugins.registry import list_heads

    heads = list_heads(pm)
    for r in sweep_points(request, pm):
        for option, value in (r.command_line() | {"seeds": r.seeds}).items():
            problem = setting_problem(option, value)
            if problem:
                raise RunError(f"--{option.replace('_', '-')} {problem}")
    for key, tables in (("head_params", entry.head_params), ("head_train", entry.head_train)):
        for name in tables:  # a misspelt head would otherwise leave its settings silently unused
            if not heads.knows(name):
                e = UnknownNameError("fusion head", name, heads.names(), "clipclap heads list")
                raise ConfigError(f"{entry.origin} [datasets.{entry.name}] {key}.{name}: {e}")
    check_device(request.device)


def plan_runs(entry, request: RunRequest, dims: dict[str, Any], store: StoreLocation, runs_dir: Path,
              run_dir: Path | None = None, pm=None) -> list[tuple[Path, RunSpec]]:
    """The (folder, spec) of every run in `request` (checked by `check_request`), on the data of
    `entry`'s dataset as read (`dims`: `ProtocolData.dims`) from the store at `store`.

    Training settings are merged once (`merge_settings`), later winning: the protocol's, the
    dataset's (datasets.toml `train`), the head's own (`train_defaults`, e.g. the baselines' lr
    1e-3 and 50 epochs), the dataset's `head_train.<head>` (e.g. TCaF's VGGSound lr), the command
    line; the run records where each value came from. Head parameters: the head's
    defaults, the dataset's `head_params.<head>`, then `-p key=value`.
    Everything is validated here so that bad input fails before any run folder is written.
    """
    points = sweep_points(request, pm)
    if run_dir is not None and len(points) > 1:
        raise RunError("--run names one run; use --runs-dir with a sweep (-p KEY=V1,V2)")
    plan = [run for point in points for run in _plan_point(entry, point, dims, store, runs_dir, run_dir, pm)]
    plan = _one_run_per_folder(plan)
    for path, _ in plan:  # runs write only into runs (`check_run_folder`): refused before any is written
        check_run_folder(path, store.path)
    return plan


def _plan_point(entry, r: RunRequest, dims: dict[str, Any], store: StoreLocation, runs_dir: Path,
                run_dir: Path | None, pm) -> list[tuple[Path, RunSpec]]:
    """The runs of one point of a sweep (`sweep_points`: no value list left in `r.params`)."""
    from clipclap_cli.params import build_params, pairs_to_dict
    from clipclap_cli.plugins.registry import list_heads

    cli = r.command_line()
    heads = list_heads(pm)
    split = r.split or entry.split
    cli_params = pairs_to_dict(r.params)
    plan = []
    for head in r.heads:
        head_cls = heads.get(head)
        given = _for_head(entry.head_params, head) | cli_params
        parsed = build_params(head_cls.Params, given)
        check_label_parts(store, entry.name, dims, head_cls, parsed)
        params = {k: getattr(parsed, k) for k in given}
        variant = {k: getattr(parsed, k) for k in cli_params}
        where = f"{entry.origin} [datasets.{entry.name}]"
        given_cli = cli
        if head_cls.training_free:  # the schedule of what it does not train is not its to take
            given_cli = {k: v for k, v in cli.items() if k not in TRAINING_ONLY}
        layers = [(f"{where} train", entry.train), (f"head {head} (train_defaults)", head_cls.train_defaults),
                  (f"{where} head_train.{head}", _for_head(entry.head_train, head)), ("command line", given_cli)]
        defaults, _ = merge_settings(layers[:-1])
        settings, sources = merge_settings(layers)
        # recorded only where the run departs from them, so a faithful run's spec (and folder) is
        # the same as before these were recorded
        departs = ({} if defaults.lr_scheduler else {"lr_scheduler": False}) | {
            k: getattr(defaults, k) for k in SCHEDULE_SETTINGS if getattr(settings, k) != getattr(defaults, k)}
        for seed in range(settings.seed, settings.seed + r.seeds):
            cfg = dataclasses.replace(settings, seed=seed, beta_grid=tuple(settings.beta_grid))
            spec = RunSpec(entry.name, split, head, params, dims, cfg, variant, r.legacy_label_order, departs, sources)
            checked_head(spec, pm)  # the head must accept these dims and parameters
            plan.append((run_dir or default_run_dir(runs_dir, spec), spec))
    return plan


SWEPT_SETTINGS = ("epochs", "lr", "batch_size", "batches_per_epoch", "seed")
"Training settings `-p` takes beside head parameters (`-p lr=1e-4,3e-4`): those with an option"


def sweep_points(request: RunRequest, pm=None) -> list[RunRequest]:
    """The request once per point of its sweep: `-p KEY=V1,V2,...` (a head parameter or one of
    SWEPT_SETTINGS) asks for one run per value, several such keys for their product (in the
    order given), each point with `--seeds` runs; a request without value lists is its one point.

    A comma always separates values (so a string parameter cannot hold one from `-p`); values are
    read per the key's type, and an empty or repeated value (`1e-3,0.001`) is refused, as is a
    key that is both a setting and a parameter, neither, or given also by its option (`--lr`)."""
    import itertools

    from clipclap_cli.errors import ParamError
    from clipclap_cli.params import _coerce, field_types, pairs_to_dict
    from clipclap_cli.plugins.registry import list_heads
    from clipclap_cli.protocol import TrainSettings

    registry = list_heads(pm)
    head_keys = {k: (name, registry.get(name)) for name in reversed(request.heads)
                 for k in field_types(registry.get(name).Params)}
    given, settings, lists = pairs_to_dict(request.params), {}, []
    for key, raw in given.items():
        if key in SWEPT_SETTINGS and key in head_keys:
            raise ParamError(f"-p {key}: both a training setting and a parameter of head "
                             f"{head_keys[key][0]}; it cannot be told which is meant")
        if key not in SWEPT_SETTINGS and key not in head_keys:
            valid = ", ".join([*dict.fromkeys(head_keys), *SWEPT_SETTINGS])
            raise ParamError(f"unknown parameter {key!r}; valid: {valid}")
        if key in SWEPT_SETTINGS and getattr(request, key) is not None:
            raise ParamError(f"{key} is given twice: --{key.replace('_', '-')} and -p {key}=...")
        raws = [v.strip() for v in raw.split(",")] if "," in raw else [raw]
        if "" in raws:
            raise ParamError(f"-p {key}={raw}: an empty value in the list")
        cls = TrainSettings if key in SWEPT_SETTINGS else head_keys[key][1].Params
        typed = [_coerce(key, v, field_types(cls)[key]) for v in raws]  # types only: ranges per point, later
        twice = next((v for i, v in enumerate(typed) if v in typed[:i]), None)
        if twice is not None:
            raise ParamError(f"-p {key}={raw}: the value {twice!r} is given twice")
        if key in SWEPT_SETTINGS:
            settings[key] = typed
        lists.append((key, list(zip(raws, typed, strict=True))))
    points = []
    for values in itertools.product(*(vs for _, vs in lists)):
        chosen = {key: v for (key, _), v in zip(lists, values, strict=True)}
        params = tuple(f"{k}={raw}" for k, (raw, _) in chosen.items() if k not in settings)
        points.append(dataclasses.replace(request, params=params, **{
            k: typed for k, (_, typed) in chosen.items() if k in settings}))
    return points


def _for_head(tables: dict[str, dict], head: str) -> dict:
    """A dataset's table for `head`: under its name as given, else (for `SOURCE:NAME`) its bare name."""
    from clipclap_cli.plugins.registry import split_qualified

    return tables.get(head, tables.get(split_qualified(head)[1], {}))


def _one_run_per_folder(plan: list[tuple[Path, RunSpec]]) -> list[tuple[Path, RunSpec]]:
    """The plan without repeats: a head named twice asks for one run, not for two processes
    writing one folder. Two different runs for one folder are refused."""
    by_folder: dict[Path, RunSpec] = {}
    for path, spec in plan:
        if path in by_folder and by_folder[path] != spec:
            raise RunError(f"two different runs would share the folder {path}; ask for them one at a time")
        by_folder.setdefault(path, spec)
    return list(by_folder.items())


def parse_grid(text: str) -> tuple[float, float, int]:
    """'START:STOP:POINTS' -> (start, stop, points), e.g. '0:5:76' (ClipClap) or '0:3:16' (AVCA):
    protocol.py's one parse and check of a bias grid (`parse_beta_grid`: finite, in range)."""
    return parse_beta_grid(text)
