"""Checkpoints: safetensors files with JSON metadata (models, and the resumable trainer state),
plus the reference implementation's torch checkpoints, read with `weights_only=True`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save

from clipclap_cli.errors import CheckpointError, WriteError
from clipclap_cli.files import replacing
from clipclap_cli.runs.run_format import RUN_FORMAT, numbered_from_one


def _atomic_save(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
    """Write a checkpoint whole or not at all: serialised in memory, written beside `path` with
    the permissions of any other file (safetensors' own `save_file` makes them 0600), synced and
    renamed over it. A full disk or any other failure is one `WriteError` naming the file, the
    partial copy removed and the previous checkpoint intact. (The metadata is JSON as Python writes
    it: a resume state holds the LR scheduler's state, whose `mode_worse` is infinite.)"""
    meta_text = json.dumps(meta, sort_keys=True)
    try:
        blob = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata={"clipclap": meta_text})
    except Exception as e:  # safetensors' SafetensorError, of several causes
        raise WriteError(f"cannot write {path}: {type(e).__name__}: {str(e)[:120]}") from None
    after = "the run resumes from its last checkpoint once there is room (rerun the same command)"
    with replacing(path, after=after) as tmp, open(tmp, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())


_RETRAIN = "remove its stage folder and rerun the same command to train that stage again"


def _read(path: Path, remedy: str = _RETRAIN) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint's tensors and metadata; a missing or damaged file is one CheckpointError
    (writes are atomic, so damage comes from outside: a disk, a partial copy). `remedy` ends the
    damaged file's message: by default how to train its stage again, since runs write these."""
    if not Path(path).exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("clipclap", "{}"))
        return load_file(str(path)), meta
    except Exception as e:  # safetensors' and json's errors, of several kinds
        raise CheckpointError(f"{path} is damaged ({type(e).__name__}: {str(e)[:120]}); {remedy}") from None


def save_model(path: Path, head, meta: dict[str, Any]) -> None:
    """A head's state dict (the published checkpoints' names) with JSON metadata."""
    _atomic_save(head.state_dict(), meta, path)


def load_model(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return _read(path)


def load_into(head, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict into a head; a mismatch is one clear error naming the first bad key."""
    own = head.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: does not fit head {head.head_id!r} "
            + (f"(missing {missing[0]!r}" if missing else f"(unexpected {unexpected[0]!r}")
            + f", {len(missing)} missing / {len(unexpected)} unexpected keys)"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, head {head.head_id!r} "
                f"expects {tuple(value.shape)} (check -p modality/labels and the dataset's dims)"
            )
    head.load_state_dict(state)


def load_checkpoint_file(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """A model file named on the command line, and the epoch it records (counted from 1, as the
    reference's files and clipclap's since run format 2 count it): a checkpoint of the
    reference code (a torch file with {'model': state_dict, 'epoch': int}, or a bare state dict),
    or a clipclap model file (`.safetensors`, as a run's stage folders hold).

    The suffix decides: torch.load happens to read safetensors files too, but clipclap's own are
    read as what they are, with their metadata's epoch."""
    if Path(path).suffix == ".safetensors":
        state, meta = _read(path, remedy="not a clipclap model file, or an incomplete copy of one")
        epoch = meta.get("epoch")
        if isinstance(epoch, int) and meta.get("run_format", 1) < 2:  # clipclap 0.1 counted from 0
            epoch += 1
        return state, epoch
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # no file, unpickling refused, or a corrupt file
        raise CheckpointError(f"{path}: {torch_load_failure(path, e)}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return _without_data_parallel_prefix(obj["model"]), obj.get("epoch")
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _without_data_parallel_prefix(obj), None
    raise CheckpointError(f"{path}: expected a dict with 'model' (a state dict) and 'epoch'")


def torch_load_failure(path: Path | str, error: Exception) -> str:
    """Why torch.load(path, weights_only=True) raised `error`, in one line (after "PATH: ").
    Its weights-only refusal is a page of advice (re-running with weights_only=False among it,
    which clipclap never does): keep its reason; a file that is neither of torch.save's formats
    says so rather than how unpickling tripped over it; otherwise torch's first sentence."""
    path = Path(path)
    if not path.exists():
        return "no such checkpoint"
    if not path.is_file():
        return "not a file"
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":
        return "not a torch checkpoint (torch.save writes a zip archive or a pickle; this file is neither)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    refused = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if refused:
        return (f"refused, it holds more than tensors and plain containers "
                f"({refused.group(1).split(' Please use')[0].rstrip('.')}; checkpoints load with weights_only=True)")
    first_sentence = text.split("\n")[0].split(". ")[0]
    return f"not a loadable torch checkpoint ({type(error).__name__}: {first_sentence[:120]})"


def _without_data_parallel_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model saved from inside `nn.DataParallel` names every key `module.<name>`: the same
    weights under their own names (only when every key has the prefix)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def save_trainer(path: Path, trainer) -> None:
    """Everything needed to continue after the last completed epoch, bit for bit."""
    tensors = {f"model.{k}": v for k, v in trainer.head.state_dict().items()}
    opt = trainer.optimizer.state_dict() if trainer.optimizer is not None else {"state": {}, "param_groups": []}
    for idx, entries in opt["state"].items():
        for key, value in entries.items():
            tensors[f"optim.{idx}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    # the dropout masks' generator: torch's global one for a run alone, the run's own in a stack
    # (its state under the same key, so a run resumes alone or stacked alike)
    on_cuda, own = trainer.data.audio.is_cuda, trainer.dropout_generator
    tensors["rng.torch"] = own.get_state() if own is not None and not on_cuda else torch.get_rng_state()
    tensors["rng.sampler"] = trainer.generator.get_state()
    if on_cuda:
        tensors["rng.cuda"] = (own.get_state() if own is not None
                               else torch.cuda.get_rng_state(trainer.data.audio.device))
    s = trainer.state
    scheduler = trainer.scheduler.state_dict() if trainer.scheduler is not None else None
    meta = {"run_format": RUN_FORMAT, "epochs_done": s.epochs_done, "best_epoch": s.best_epoch,
            "best_hm": s.best_hm, "best_betas": s.best_betas,
            "history": s.history, "scheduler": scheduler, "param_groups": opt["param_groups"]}
    _atomic_save(tensors, meta, path)


def load_trainer(path: Path, trainer) -> None:
    tensors, meta = _read(path)
    trainer.head.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    if trainer.optimizer is not None:  # None: a training-free head
        trainer.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        trainer.scheduler.load_state_dict(meta["scheduler"])
    on_cuda, own = trainer.data.audio.is_cuda, trainer.dropout_generator
    trainer.generator.set_state(tensors["rng.sampler"])
    if own is not None and not on_cuda:
        own.set_state(tensors["rng.torch"])
    else:
        torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and on_cuda:
        if own is not None:
            own.set_state(tensors["rng.cuda"])
        else:
            torch.cuda.set_rng_state(tensors["rng.cuda"], trainer.data.audio.device)
    s = trainer.state
    if meta.get("run_format", 1) < 2:  # written by clipclap 0.1: epochs counted from 0
        meta = numbered_from_one(meta) | {"epochs_done": meta["epoch"] + 1,
                                          "history": [numbered_from_one(r) for r in meta["history"]]}
    s.epochs_done, s.best_epoch, s.best_hm = meta["epochs_done"], meta["best_epoch"], meta["best_hm"]
    s.best_betas, s.history = meta["best_betas"], meta["history"]
