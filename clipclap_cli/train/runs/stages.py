"""Training a run's stages, resumable by epoch, and the test evaluation that ends it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from clipclap_cli.data.protocol_data import ProtocolData, load_protocol_data
from clipclap_cli.errors import RunError
from clipclap_cli.evaluate.metrics import beta_star
from clipclap_cli.evaluate.reporting import FILE_UNITS
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.store.locks import exclusive
from clipclap_cli.train.checkpoints import load_trainer, save_model, save_trainer
from clipclap_cli.train.run_format import RUN_FORMAT
from clipclap_cli.train.runs.folder import cpu_threads, load_spec, open_run, stage_result, write_json
from clipclap_cli.train.runs.results import evaluate_loaded_run
from clipclap_cli.train.runs.spec import RunSpec, build_head
from clipclap_cli.train.trainer import EpochRecord, Trainer


@dataclass
class Callbacks:
    """Progress hooks for the CLI; core code never prints."""

    stage_start: Callable[[int, int, int], None] = lambda stage, epochs_done, epochs: None
    "A stage starts, or resumes after `epochs_done` epochs (0 for a fresh start), of `epochs`"
    step: Callable[[int], None] = lambda step: None
    epoch_end: Callable[[int, EpochRecord], None] = lambda stage, record: None
    stage_reused: Callable[[int, dict], None] = lambda stage, result: None
    "A stage the run had finished already (its result.json), reused without training"


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
    if head.training_free:  # its one epoch is the validation pass; more would repeat it
        cfg = dataclasses.replace(cfg, epochs=1)
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
            return evaluate_loaded_run(path, *load_spec(path), store, pm, data)
    return None
