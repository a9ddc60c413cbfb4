"""Training a run's stages, resumable by epoch, and the test evaluation that ends it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from clipclap_cli.data.protocol_data import ProtocolData
from clipclap_cli.errors import RunError
from clipclap_cli.evaluate.evaluation import evaluate_models
from clipclap_cli.evaluate.metrics import beta_star
from clipclap_cli.files import json_text, write_text_atomic
from clipclap_cli.protocol import FILE_UNITS
from clipclap_cli.runs.checkpoints import load_trainer, save_model, save_trainer
from clipclap_cli.runs.files import BEST_MODEL, CHECKPOINT, FINAL_MODEL, LOCK, METRICS, STAGE_RESULT, stage_folder
from clipclap_cli.runs.folder import check_run, cpu_threads, load_spec, stage_result, start_run, write_json
from clipclap_cli.runs.results import check_stages, stage_models, write_results
from clipclap_cli.runs.run_format import RUN_FORMAT
from clipclap_cli.runs.spec import RunSpec, build_head
from clipclap_cli.store.locations import StoreLocation
from clipclap_cli.store.locks import exclusive
from clipclap_cli.train.trainer import EpochRecord, Trainer


@dataclass
class Callbacks:
    """Progress hooks for the CLI; core code never prints."""

    stage_start: Callable[[int, int, int, int], None] = lambda stage, epochs_done, epochs, batches: None
    "A stage starts, or resumes after `epochs_done` epochs (0 for a fresh start), of `epochs` of `batches` batches each"
    step: Callable[[int], None] = lambda step: None
    epoch_end: Callable[[int, EpochRecord], None] = lambda stage, record: None
    stage_reused: Callable[[int, dict], None] = lambda stage, result: None
    "A stage the run had finished already (its result.json), reused without training"


@dataclass
class StageRun:
    """One run's stage while it trains: its trainer, the settings it trains with, its files."""

    path: Path
    spec: RunSpec
    stage: int
    cb: Callbacks
    trainer: Trainer
    epochs: int
    meta: dict

    @property
    def folder(self) -> Path:
        return stage_folder(self.path, self.stage)

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def unfinished(self) -> bool:
        return self.trainer.state.epochs_done < self.epochs

    def failed(self, error: RunError) -> RunError:
        """A failed epoch's error, saying which run and stage."""
        return RunError(f"run {self.path}, stage {self.stage}: {error}")

    def save_epoch(self, record: EpochRecord) -> None:
        """After an epoch: the best model, the metrics line, the resumable checkpoint."""
        head = self.trainer.head
        if record.best_epoch == record.epoch:
            save_model(self.folder / BEST_MODEL, head,
                       self.meta | {"epoch": record.epoch, "val_hm": record.best_hm})
        write_metrics(self.folder, self.trainer.state.history)
        save_trainer(self.checkpoint, self.trainer)
        self.cb.epoch_end(self.stage, record)

    def finish(self) -> dict:
        """The last epoch done: the final model and the stage's result."""
        s = self.trainer.state
        save_model(self.folder / FINAL_MODEL, self.trainer.head, self.meta | {"epoch": s.epochs_done})
        result = {"stage": self.stage, "epochs": self.epochs, "best_epoch": s.best_epoch, "best_val_hm": s.best_hm,
                  "val_betas": s.best_betas, "beta_star": beta_star(s.best_betas), "run_format": RUN_FORMAT,
                  "units": FILE_UNITS}
        write_json(self.folder / STAGE_RESULT, result)
        self.checkpoint.unlink(missing_ok=True)
        return result


def start_stage(path: Path, spec: RunSpec, data: ProtocolData, stage: int, cb: Callbacks, pm=None,
                stacked: bool = False) -> StageRun | dict:
    """Set up one stage of a run: its result if it is finished already, else its `StageRun`,
    resumed from its last completed epoch. `stacked`: the run trains in a stack, with its own
    dropout generator (see `Trainer`)."""
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
    if head.training_free:  # its one epoch is the validation pass; more would repeat it
        cfg = dataclasses.replace(cfg, epochs=1)
    train_set, val = data.sets.train[stage], data.sets.val  # made by the read
    trainer = Trainer(head, data, train_set, val, cfg, own_dropout_generator(data) if stacked else None)
    run = StageRun(path, spec, stage, cb, trainer, cfg.epochs,
                   {"head": spec.head, "params": spec.params, "dims": spec.dims, "dataset": spec.dataset,
                    "stage": stage, "run_format": RUN_FORMAT})
    if run.checkpoint.exists():
        load_trainer(run.checkpoint, trainer)
    write_metrics(run.folder, trainer.state.history)
    cb.stage_start(stage, trainer.state.epochs_done, cfg.epochs, 0 if head.training_free else cfg.batches_per_epoch)
    return run


def write_metrics(folder: Path, history: list[dict]) -> None:
    """A stage's metrics.jsonl: one line per completed epoch, the file replaced whole (a full disk
    leaves the previous one, never a cut line) and finite numbers only. A stage that resumes
    writes it from its checkpoint's history, so it never holds an epoch the checkpoint does not."""
    path = folder / METRICS
    write_text_atomic(path, "".join(json_text(r, indent=None, what=f"{path} (epoch {r.get('epoch')})") + "\n"
                                    for r in history))


def own_dropout_generator(data: ProtocolData) -> torch.Generator:
    """A generator in the state torch's global one (on the data's device) has now: a run's masks
    drawn from it are those the run alone draws from the global one."""
    device = data.audio.device
    generator = torch.Generator(device)
    generator.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return generator


def train_stage(path: Path, spec: RunSpec, data: ProtocolData, stage: int, cb: Callbacks, pm=None) -> dict:
    """Train one stage (resuming from its last completed epoch) and write its result."""
    run = start_stage(path, spec, data, stage, cb, pm)
    if isinstance(run, dict):
        return run
    while run.unfinished:
        try:
            record = run.trainer.run_epoch(cb.step)
        except RunError as e:  # a loss that turned non-finite: say which run and stage
            raise run.failed(e) from None
        run.save_epoch(record)
    return run.finish()


def busy(path: Path, holder: str) -> RunError:
    """The error of a run that another process trains (the same command started twice would
    append to one metrics.jsonl)."""
    return RunError(f"run {path} is being trained by another process (host and pid: {holder}); wait for it or "
                    f"stop it; if it died on another machine, remove {path / LOCK}")


def train_run(path: Path, spec: RunSpec, store: StoreLocation, data: ProtocolData, stages: tuple[int, ...],
              cb: Callbacks | None = None, pm=None, threads: int | None = None) -> dict | None:
    """Train the requested stages of a run on `data` (the command's one read of the store at
    `store`: `DatasetReads.read` of what `spec` names); with both stages, evaluate and return the
    results. `threads`: CPU threads for a new run (see `run_threads`)."""
    cb = cb or Callbacks()
    if stages[0] == 2 and stage_result(path, 1) is None:
        raise RunError(f"run {path} has no completed stage 1; "
                       f"run `clipclap train {spec.dataset} --stage 1 --run {path}` first")
    # the folder and what the run recorded (its settings, the digest of its data), before any write
    opening = check_run(path, spec, store, threads, data.digest)
    with cpu_threads(start_run(opening, data.digest)), exclusive(path / LOCK) as holder:
        if holder is not None:  # the same command started twice would append to one metrics.jsonl
            raise busy(path, holder)
        for stage in stages:
            train_stage(path, spec, data, stage, cb, pm)
        if 2 in stages:
            recorded, _ = load_spec(path)  # the run as its config.json holds it, as `evaluate RUN` reads it
            check_stages(path, recorded)
            models = stage_models(path, recorded, pm)
            return write_results(path, recorded, evaluate_models(data, *models, tuple(recorded.train.beta_grid)))
    return None
