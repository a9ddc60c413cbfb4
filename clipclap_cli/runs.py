"""Training runs on disk: one folder per run, resumable stage by stage.

    <run>/config.json                  what was asked (dataset, split, head, params, settings), the
                                       store, a digest of the data read and the CPU threads used
    <run>/stage{1,2}/metrics.jsonl     one line per completed epoch
    <run>/stage{1,2}/checkpoint-last.safetensors   resume state (removed when the stage ends)
    <run>/stage{1,2}/best.safetensors, final.safetensors   models with JSON metadata
    <run>/stage{1,2}/result.json       best epoch, validation HM and betas

Epochs count from 1 in every file, as on the console (`training.RUN_FORMAT`); accuracies in
files are fractions (0-1), each JSON file says so in `units`, and what people read is percent.
    <run>/results.json                 the test evaluation (deterministic: same seed and threads, same bytes)
    <run>/train.lock                   while a process trains the run: its host and pid (one at a time)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoints import load_into, load_model, load_trainer, save_model, save_trainer
from .data import LABEL_PARTS, ProtocolData, load_protocol_data
from .devices import check_device
from .errors import RunError
from .evaluation import evaluate_models
from .locks import exclusive
from .metrics import beta_star
from .protocol import DEFAULT_BETA_GRID, SCHEDULE_SETTINGS, protocol_variant, setting_problem
from .registries import create_head
from .reporting import FILE_UNITS
from .splits import check_training_videos
from .store import FeatureStore, now_iso
from .training import RUN_FORMAT, EpochRecord, TrainConfig, Trainer, numbered_from_one


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run's numbers (seed included)."""

    dataset: str
    split: str
    head: str
    params: dict[str, Any]
    dims: dict[str, Any]
    train: TrainConfig
    variant: dict[str, Any] = dataclasses.field(default_factory=dict)
    "The parameters given on the command line: they name the run folder and the report's row"
    legacy_label_order: bool = False
    "Give classes the reference's sorted-key label embeddings (BASELINES.md 1.3)"
    protocol_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    "Defaults the run departs from (`--epochs 3`), or the head's on this dataset where not the protocol's"

    @property
    def label_parts(self) -> tuple[str, ...]:
        """The label embeddings the run reads, side by side (those the store held when it started)."""
        return tuple(name for name, _ in self.dims["text_parts"])

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.protocol_defaults:
            del out["protocol_defaults"]  # the usual case: specs (and run folders) as before the field existed
        return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically with sorted keys (same content, same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """A run's JSON file; a damaged one is a RunError naming it, not a traceback."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is damaged (not valid JSON: {e})") from None


@dataclass
class Callbacks:
    """Progress hooks for the CLI; core code never prints."""

    stage_start: Callable[[int, int, int], None] = lambda stage, epochs_done, epochs: None
    "A stage starts, or resumes after `epochs_done` epochs (0 for a fresh start), of `epochs`"
    step: Callable[[int], None] = lambda step: None
    epoch_end: Callable[[int, EpochRecord], None] = lambda stage, record: None
    stage_reused: Callable[[int, dict], None] = lambda stage, result: None
    "A stage the run had finished already (its result.json), reused without training"


def _dims_from(spec: RunSpec):
    from .api import FeatureDims

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


def check_label_parts(store: FeatureStore, dataset: str, dims: dict[str, Any], head_cls, params) -> None:
    """Refuse a head whose label embeddings (`label_parts`) the dataset lacks, in one line that
    says which to compute; a plugin that names an unknown part is refused the same way."""
    needed = tuple(head_cls.label_parts(params))
    if not needed or needed != tuple(n for n in LABEL_PARTS if n in needed):
        raise RunError(f"head {head_cls.head_id!r}: label_parts() must name some of {', '.join(LABEL_PARTS)}, "
                       f"in that order, not {', '.join(map(str, needed)) or 'none'}")
    held = [n for n, _ in dims["text_parts"]]
    lacking = [n for n in needed if n not in held]
    if lacking:
        raise RunError(f"head {head_cls.head_id!r} reads {' and '.join(needed)} label embeddings; dataset {dataset!r} "
                       f"in {store} has {' and '.join(held) or 'none'} (run "
                       + " and ".join(f"`clipclap embed {dataset} --encoder {n}`" for n in lacking) + " first)")


def default_run_dir(runs_dir: Path, spec: RunSpec) -> Path:
    """runs/<dataset>/<head>[,k=v...]/seed<seed>: runs differing only in seed are siblings.
    Every part of the path is checked (`names.py`): no name or value can lead it elsewhere."""
    from .names import check_folder_value, check_name

    method = ",".join([check_name("fusion head", spec.head)]
                      + [f"{check_name('parameter', k)}={check_folder_value(k, v)}"
                         for k, v in sorted(spec.variant.items())]
                      + protocol_variant(spec.as_dict()))
    name = check_name("dataset", spec.dataset)
    if spec.split != "cls_split":
        name += f"-{check_name('split', spec.split)}"
    return runs_dir / name / method / f"seed{spec.train.seed}"


def build_head(spec: RunSpec, pm=None):
    return create_head(spec.head, _dims_from(spec), spec.params, pm=pm)


def checked_head(spec: RunSpec, pm=None):
    """`build_head` for input from the command line: whatever a plugin's constructor raises
    becomes one error line that names the head and its parameters."""
    from .errors import ClipclapError, ParamError

    try:
        return build_head(spec, pm)
    except ClipclapError:
        raise
    except Exception as e:  # a plugin's constructor may raise anything
        raise ParamError(f"head {spec.head!r} cannot be built with {spec.params or 'its defaults'} "
                         f"({type(e).__name__}: {e})") from None


def _settings(spec: RunSpec) -> dict[str, Any]:
    """A spec as its config.json holds it (tuples as lists), less the schedule defaults it records
    only to name its folder: they do not change its numbers, so a run started before they were
    recorded, or before datasets.toml's defaults changed, is still the same run."""
    out = json.loads(json.dumps(spec.as_dict()))
    named = {k: v for k, v in out.pop("protocol_defaults", {}).items() if k not in SCHEDULE_SETTINGS}
    return out | ({"protocol_defaults": named} if named else {})


def _differing(a: Any, b: Any) -> list[str]:
    """The keys on which two dicts differ (none when either is not a dict)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return []
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def open_run(path: Path, spec: RunSpec, store: FeatureStore, data: ProtocolData, threads: int | None) -> int:
    """Create the run folder, or check that an existing one was started with the same spec, data
    and threads; returns the CPU threads to train with (see `run_threads`)."""
    config = path / "config.json"
    if config.exists():
        # read back through RunSpec: settings added since the run was written take their
        # defaults, which keep the earlier behaviour, so such runs resume instead of failing
        recorded, raw = load_spec(path)
        old, new = _settings(recorded), _settings(spec)
        if old != new:
            diff = [f"{k}.{sub}" if sub else k for k in _differing(old, new)
                    for sub in _differing(old.get(k), new.get(k)) or [""]]
            raise RunError(f"run {path} exists with different settings ({', '.join(diff)}); "
                           "choose another --run folder or remove it")
        check_same_data(path, raw, data)
        return run_threads(path, raw, threads)
    from . import __version__

    threads = run_threads(path, None, threads)
    write_json(config, {"spec": spec.as_dict(), "store": store.location.recorded(), "data_digest": data.digest,
                        "threads": threads, "created": now_iso(), "clipclap_version": __version__,
                        "torch_version": torch.__version__, "run_format": RUN_FORMAT})
    return threads


def run_threads(path: Path, raw: dict | None, threads: int | None) -> int:
    """The CPU threads a run trains with: those its config (`raw`, None for a new run) recorded
    when it started (its numbers depend on them at the last bit: a matrix multiply splits its
    work by thread), else `threads`, else torch's default. Another count for a started run is refused."""
    recorded = raw.get("threads") if raw is not None else None
    if threads is not None and recorded is not None and threads != recorded:
        raise RunError(f"run {path} trains with {recorded} CPU thread(s); another count would change its numbers "
                       f"(leave out --threads, or pass --threads {recorded})")
    return recorded or threads or torch.get_num_threads()


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to `n` for the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_same_data(path: Path, raw: dict, data: ProtocolData) -> None:
    """Refuse a run whose features, label embeddings or split changed since it was started (runs
    written before clipclap recorded the digest are taken as they are)."""
    recorded = raw.get("data_digest")
    if recorded and recorded != data.digest:
        raise RunError(f"run {path} was trained on other {data.dataset!r} data (split {data.split!r}) than the store "
                       "now holds: its features, label embeddings or split changed since; train a new run on this "
                       "data (another --run folder), or point --store at the data the run was trained on")


def load_spec(path: Path) -> tuple[RunSpec, dict]:
    config = path / "config.json"
    if not config.exists():
        raise RunError(f"{path}: not a clipclap run (no config.json)")
    raw = read_json(config)
    try:
        s = raw["spec"]
        spec = RunSpec(s["dataset"], s["split"], s["head"], s["params"], s["dims"], TrainConfig(**s["train"]),
                       s.get("variant", {}), s.get("legacy_label_order", False), s.get("protocol_defaults", {}))
    except (KeyError, TypeError) as e:
        made_by = raw.get("clipclap_version", "?") if isinstance(raw, dict) else "?"
        raise RunError(f"{path}: config.json is not one this clipclap can read ({e}); "
                       f"it was written by clipclap {made_by}") from None
    return spec, raw


def stage_result(path: Path, stage: int) -> dict | None:
    """A finished stage's result.json (epochs counted from 1, whichever run format wrote it)."""
    f = path / f"stage{stage}" / "result.json"
    if not f.exists():
        return None
    result = read_json(f)
    return result if result.get("run_format", 1) >= 2 else numbered_from_one(result) | {"run_format": RUN_FORMAT}


def train_stage(path: Path, spec: RunSpec, data: ProtocolData, stage: int, cb: Callbacks, pm=None) -> dict:
    """Train one stage (resuming from its last completed epoch) and write its result."""
    sdir = path / f"stage{stage}"
    done = stage_result(path, stage)
    if done is not None:
        cb.stage_reused(stage, done)
        return done
    cfg = spec.train
    if stage == 2:
        first = stage_result(path, 1)
        if first is None:
            raise RunError(f"run {path} has no completed stage 1; "
                           f"run `clipclap train {spec.dataset} --stage 1 --run {path}` first")
        cfg = dataclasses.replace(cfg, epochs=first["best_epoch"])  # stage 2 trains as many epochs as stage 1 chose
    torch.manual_seed(cfg.seed)
    head = build_head(spec, pm).to(cfg.device)
    train_set, val = data.stage(stage)
    trainer = Trainer(head, data, train_set, val, cfg)
    ckpt = sdir / "checkpoint-last.safetensors"
    if ckpt.exists():
        load_trainer(ckpt, trainer)
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in trainer.state.history))
    meta = {"head": spec.head, "params": spec.params, "dims": spec.dims, "dataset": spec.dataset, "stage": stage,
            "run_format": RUN_FORMAT}
    cb.stage_start(stage, trainer.state.epochs_done, cfg.epochs)
    while trainer.state.epochs_done < cfg.epochs:
        try:
            record = trainer.run_epoch(cb.step)
        except RunError as e:  # a loss that turned non-finite: say which run and stage
            raise RunError(f"run {path}, stage {stage}: {e}") from None
        if record.best_epoch == record.epoch:
            save_model(sdir / "best.safetensors", head, meta | {"epoch": record.epoch, "val_hm": record.best_hm})
        with (sdir / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(record.as_dict(), sort_keys=True) + "\n")
        save_trainer(ckpt, trainer)
        cb.epoch_end(stage, record)
    save_model(sdir / "final.safetensors", head, meta | {"epoch": trainer.state.epochs_done})
    s = trainer.state
    result = {"stage": stage, "epochs": cfg.epochs, "best_epoch": s.best_epoch, "best_val_hm": s.best_hm,
              "val_betas": s.best_betas, "beta_star": beta_star(s.best_betas), "run_format": RUN_FORMAT,
              "units": FILE_UNITS}
    write_json(sdir / "result.json", result)
    ckpt.unlink(missing_ok=True)
    return result


def _load_stage_model(path: Path, spec: RunSpec, name: str, pm=None):
    head = build_head(spec, pm).to(spec.train.device)
    state, _ = load_model(path / name)
    load_into(head, state, str(path / name))
    return head


def evaluate_run(path: Path, store: FeatureStore | None = None, pm=None, data: ProtocolData | None = None) -> dict:
    """`clipclap evaluate RUN`: beta* from stage 1 on validation, stage-2 model on test
    (`data`: the run's dataset when the caller has it loaded already), with the run's threads."""
    spec, raw = load_spec(path)
    with cpu_threads(run_threads(path, raw, None)):
        return _evaluate_run(path, spec, raw, store, pm, data)


def _evaluate_run(path: Path, spec: RunSpec, raw: dict, store: FeatureStore | None, pm,
                  data: ProtocolData | None) -> dict:
    for stage in (1, 2):
        if stage_result(path, stage) is None:
            raise RunError(f"run {path} has no completed stage {stage}; "
                           f"run `clipclap train {spec.dataset} --stage {stage} --run {path}`")
    if data is None:
        if store is None:
            store = FeatureStore(raw["store"])
            if not store.location.exists():
                raise RunError(f"run {path} was trained on the store {raw['store']}, which is not there any more; "
                               "pass --store with the store's new place")
        data = load_protocol_data(store, spec.dataset, spec.split, spec.train.device, spec.legacy_label_order,
                                  spec.label_parts)
    check_same_data(path, raw, data)
    head1 = _load_stage_model(path, spec, "stage1/best.safetensors", pm)
    head2 = _load_stage_model(path, spec, "stage2/final.safetensors", pm)
    results = evaluate_models(data, head1, head2, tuple(spec.train.beta_grid))
    results |= {"head": spec.head, "params": spec.params, "seed": spec.train.seed,
                "best_epoch": stage_result(path, 1)["best_epoch"], "run_format": RUN_FORMAT}
    write_json(path / "results.json", results)
    return results


def train_run(path: Path, spec: RunSpec, store: FeatureStore, stages: tuple[int, ...], cb: Callbacks | None = None,
              pm=None, threads: int | None = None) -> dict | None:
    """Train the requested stages of a run; with both stages, evaluate and return the results.
    `threads`: CPU threads for a new run (see `run_threads`)."""
    cb = cb or Callbacks()
    if stages[0] == 2 and stage_result(path, 1) is None:
        raise RunError(f"run {path} has no completed stage 1; "
                       f"run `clipclap train {spec.dataset} --stage 1 --run {path}` first")
    # fails before any write
    data = load_protocol_data(store, spec.dataset, spec.split, spec.train.device, spec.legacy_label_order,
                              spec.label_parts)
    with cpu_threads(open_run(path, spec, store, data, threads)), exclusive(path / "train.lock") as holder:
        if holder is not None:  # the same command started twice would append to one metrics.jsonl
            raise RunError(f"run {path} is being trained by another process (host and pid: {holder}); wait for "
                           f"it or stop it; if it died on another machine, remove {path / 'train.lock'}")
        for stage in stages:
            train_stage(path, spec, data, stage, cb, pm)
        if 2 in stages:
            return _evaluate_run(path, *load_spec(path), store, pm, data)
    return None


@dataclass(frozen=True)
class RunRequest:
    """What `clipclap train` was asked for; None means the head's default, else the dataset's."""

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
    replay_forward: bool = True
    lr_scheduler: bool | None = None
    "None: the dataset's and head's default (on, except where datasets.toml turns it off)"
    beta_grid: tuple[float, float, int] = DEFAULT_BETA_GRID
    legacy_label_order: bool = False


def plan_runs(store: FeatureStore, entry, request: RunRequest, runs_dir: Path, run_dir: Path | None = None,
              pm=None) -> list[tuple[Path, RunSpec]]:
    """The (folder, spec) of every run in `request`.

    Settings, later winning: the dataset's training defaults (datasets.toml), the head's own
    (`train_defaults`, e.g. the baselines' lr 1e-3 and 50 epochs), the dataset's
    `head_train.<head>` (e.g. TCaF's VGGSound lr), the command line. Head parameters: the head's
    defaults, the dataset's `head_params.<head>`, then `-p key=value`.
    Everything is validated here so that bad input fails before any run folder is written.
    """
    from .errors import ConfigError, UnknownNameError
    from .params import build_params, pairs_to_dict
    from .registries import list_heads

    r = request
    cli_train = {"epochs": r.epochs, "lr": r.lr, "batch_size": r.batch_size, "batches_per_epoch": r.batches_per_epoch}
    for option, value in (cli_train | {"seeds": r.seeds}).items():
        problem = None if value is None else setting_problem(option, value)
        if problem:
            raise RunError(f"--{option.replace('_', '-')} {problem}")
    heads = list_heads(pm)
    for key, tables in (("head_params", entry.head_params), ("head_train", entry.head_train)):
        for name in tables:  # a misspelt head would otherwise leave its settings silently unused
            try:
                heads.get(name)
            except UnknownNameError as e:
                raise ConfigError(f"{entry.origin} [datasets.{entry.name}] {key}.{name}: {e}") from None
    dims = store_dims(store, entry.name)
    split = r.split or entry.split
    split_data = store.read_split(entry.name, split)  # a clear error when the split is missing
    _, labels, _ = store.read_videos(entry.name)
    check_training_videos(split_data.indices, split_data.classes, labels, store.info(entry.name)["classes"],
                          f"split {split!r} of dataset {entry.name!r}")
    check_device(r.device)
    cli_params = pairs_to_dict(r.params)
    first_seed = entry.train.seed if r.seed is None else r.seed
    plan = []
    for head in r.heads:
        head_cls = heads.get(head)
        given = entry.head_params.get(head, {}) | cli_params
        parsed = build_params(head_cls.Params, given)
        check_label_parts(store, entry.name, dims, head_cls, parsed)
        params = {k: getattr(parsed, k) for k in given}
        variant = {k: getattr(parsed, k) for k in cli_params}
        d = (dataclasses.asdict(entry.train) | dict(getattr(head_cls, "train_defaults", {}))
             | entry.head_train.get(head, {}))
        lr_scheduler = d["lr_scheduler"] if r.lr_scheduler is None else r.lr_scheduler
        settings = {k: d[k] if v is None else v for k, v in cli_train.items()}  # None: the default
        # recorded only where the run departs from them, so a faithful run's spec (and folder) is
        # the same as before these were recorded
        defaults = ({} if d["lr_scheduler"] else {"lr_scheduler": False}) | {
            k: d[k] for k, v in settings.items() if v != d[k]}
        for seed in range(first_seed, first_seed + r.seeds):
            cfg = TrainConfig(**settings, seed=seed,
                              device=r.device, weight_decay=d.get("weight_decay", TrainConfig.weight_decay),
                              replay_forward=r.replay_forward, lr_scheduler=lr_scheduler,
                              beta_grid=tuple(r.beta_grid))
            spec = RunSpec(entry.name, split, head, params, dims, cfg, variant, r.legacy_label_order, defaults)
            checked_head(spec, pm)  # the head must accept these dims and parameters
            plan.append((run_dir or default_run_dir(runs_dir, spec), spec))
    return _one_run_per_folder(plan)


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
    """'START:STOP:POINTS' -> (start, stop, points), e.g. '0:5:76' (ClipClap) or '0:3:16' (AVCA)."""
    try:
        start, stop, points = text.split(":")
        grid = (float(start), float(stop), int(points))
    except ValueError:
        raise RunError(f"--beta-grid {text!r}: expected START:STOP:POINTS, e.g. 0:5:76") from None
    if grid[2] < 1 or grid[1] < grid[0] or grid[0] < 0:
        raise RunError(f"--beta-grid {text!r}: need 0 <= START <= STOP and POINTS >= 1")
    return grid


def evaluate_checkpoints(store: FeatureStore, dataset: str, split: str, head: str, param_pairs: list[str],
                         stage1: Path, stage2: Path, device: str = "cpu", pm=None,
                         beta_grid: tuple[float, float, int] = DEFAULT_BETA_GRID,
                         legacy_label_order: bool = False) -> dict:
    """`clipclap evaluate DATASET --stage1 A.pt --stage2 B.pt`: the reference's checkpoints.

    Each file is a torch checkpoint holding {'model': state_dict, 'epoch': int}, loaded with
    `weights_only=True` (no code from the file runs), or a clipclap model file (`.safetensors`:
    one run's stage-1 model with another's stage 2, say). A folder is one of the reference's
    experiment folders, and the file is chosen in it as its evaluation script does
    (`reference_stage1_file`, `reference_stage2_file`); the results name the files read.
    `legacy_label_order` gives each class the embedding the reference's models were trained with
    (BASELINES.md 1.3).
    """
    from .checkpoints import load_checkpoint_file, reference_stage1_file, reference_stage2_file
    from .params import parse_params
    from .registries import get_head

    check_device(device)
    dims = store_dims(store, dataset)
    head_cls = get_head(head, pm)
    parsed = parse_params(param_pairs, head_cls.Params)
    check_label_parts(store, dataset, dims, head_cls, parsed)
    spec = RunSpec(dataset, split, head, dataclasses.asdict(parsed), dims, TrainConfig(epochs=0, lr=0.0, device=device),
                   legacy_label_order=legacy_label_order)
    data = load_protocol_data(store, dataset, split, device, legacy_label_order, spec.label_parts)
    stage1 = reference_stage1_file(stage1)
    first = load_checkpoint_file(stage1)
    stage2 = reference_stage2_file(stage2, stage1, first[1])  # in a folder, stage 1's epoch picks it
    heads, epochs = [], []
    for ckpt, (state, epoch) in ((stage1, first), (stage2, load_checkpoint_file(stage2))):
        model = checked_head(spec, pm).to(device)
        load_into(model, {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                  str(ckpt))
        heads.append(model)
        epochs.append(epoch)
    results = evaluate_models(data, *heads, grid=tuple(beta_grid))
    return results | {"head": head, "params": spec.params,
                      "checkpoints": {"stage1": str(stage1), "stage2": str(stage2)},
                      "checkpoint_epochs": epochs, "legacy_label_order": legacy_label_order}
