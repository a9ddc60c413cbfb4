"""The reference implementation's checkpoints (and clipclap's model files) under the test
protocol: `clipclap evaluate DATASET --stage1 ... --stage2 ...`, files or experiment folders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from clipclap_cli.data.protocol_data import load_protocol_data
from clipclap_cli.devices import check_device
from clipclap_cli.errors import CheckpointError
from clipclap_cli.evaluate.evaluation import evaluate_models
from clipclap_cli.protocol import DEFAULT_BETA_GRID, TrainSettings
from clipclap_cli.runs.checkpoints import load_into
from clipclap_cli.runs.spec import RunSpec, check_label_parts, checked_head, store_dims
from clipclap_cli.store.feature_store import FeatureStore


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
    from clipclap_cli.params import parse_params
    from clipclap_cli.plugins.registry import get_head
    from clipclap_cli.runs.checkpoints import load_checkpoint_file

    check_device(device)
    dims = store_dims(store, dataset)
    head_cls = get_head(head, pm)
    parsed = parse_params(param_pairs, head_cls.Params)
    check_label_parts(store, dataset, dims, head_cls, parsed)
    spec = RunSpec(dataset, split, head, dataclasses.asdict(parsed), dims, TrainSettings(device=device),
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


def reference_stage1_file(path: Path) -> Path:
    """The stage-1 model file of `evaluate --stage1`: the file as given, or in one of the
    reference's experiment folders the one its `get_evaluation.py --load_path_stage_A` reads.

    The reference (src/utils.py, save_best_model) keeps in an experiment folder the best model by
    validation HM as `<Model>_score.pt` and, per epoch, `checkpoints/<Model>_score_ckpt_<e>.pt`
    (e counts from 0; the file's 'epoch' is e + 1).
    """
    path = Path(path)
    if not path.is_dir():
        return path
    return _one_match(path, "*_score.pt", "the best model by validation HM, `<Model>_score.pt`")


def reference_stage2_file(path: Path, stage1: Path, stage1_epoch: int | None) -> Path:
    """The stage-2 model file of `evaluate --stage2`: the file as given, or in a reference
    experiment folder the checkpoint of epoch index (stage 1's 'epoch' - 1), the last of the
    epochs stage 2 trained, as `--load_path_stage_B` picks it. `stage1_epoch` counts from 1
    (`load_checkpoint_file`), for the reference's files and clipclap's alike."""
    path = Path(path)
    if not path.is_dir():
        return path
    if not isinstance(stage1_epoch, int) or stage1_epoch < 1:
        raise CheckpointError(f"{stage1}: records no epoch, which picks the stage-2 checkpoint in {path}; "
                              "pass --stage2 FILE")
    index = stage1_epoch - 1
    return _one_match(path, f"checkpoints/*_ckpt_{index}.pt",
                      f"stage 2's checkpoint of the epoch stage 1 chose, index {index}")


def _one_match(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        which = "no" if not found else f"{len(found)} files match"
        raise CheckpointError(f"{folder}: {which} {pattern} ({what}, as the reference's experiment folders "
                              "hold it); pass the file itself")
    return found[0]
