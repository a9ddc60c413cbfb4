"""A trained model as `predict`, `export` and the Python API use it: the stage-2 head with the
bias β* its evaluation found, the classes it was trained on, their label embeddings and where its
features came from (`TrainedModel`), loaded from a run folder or from a model file (`load_trained`).

A run is loaded through the same read as its evaluation (`load_protocol_data`, checked against
the digest the run recorded), so that predicting on its dataset decides exactly as `evaluate`
did; `load_run` hands that read on to a caller that predicts over the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipclap_cli.data.protocol_data import ProtocolData, load_protocol_data
from clipclap_cli.errors import RunError
from clipclap_cli.plugins.fusion_head import FusionHead
from clipclap_cli.runs.checkpoints import load_into, load_model
from clipclap_cli.runs.config import load_spec, read_json
from clipclap_cli.runs.files import RESULTS, evaluated_models
from clipclap_cli.runs.finding import find_run
from clipclap_cli.runs.folder import recorded_data
from clipclap_cli.runs.results import check_stages
from clipclap_cli.runs.spec import RunSpec, build_head
from clipclap_cli.store.feature_store import FeatureStore

#: what identifies the features of a modality: the encoder, its weights, how its input was taken
IDENTITY = ("encoder", "model", "pretrained", "weights_sha256", "random_weights", "frames")


@dataclass
class TrainedModel:
    """A trained head and what it needs to name classes: see the module's docstring."""

    head: FusionHead
    spec: RunSpec
    beta: float
    class_names: list[str]
    prompt_names: list[str]
    class_text: torch.Tensor
    seen: list[str]
    features: dict
    templates: dict
    results: dict | None
    source: str
    stage1_head: FusionHead | None = None
    label_encoders: dict = field(default_factory=dict)
    "per label part: what made its label embeddings ({encoder, params, templates}), where recorded"

    @property
    def seen_mask(self) -> torch.Tensor:
        """(len(class_names),) bool: which of the model's own classes it trained on."""
        seen = set(self.seen)
        return torch.tensor([name in seen for name in self.class_names], dtype=torch.bool)


def load_trained(target: Path, pm=None, store: FeatureStore | None = None) -> TrainedModel:
    """A run folder (finished and evaluated) or a model file written by `clipclap export`.
    `store`: where a run's dataset lies, when not at the place the run recorded."""
    target = Path(target)
    if target.is_file():
        from clipclap_cli.runs.model_file import read_model_file

        return read_model_file(target, pm)
    return load_run(target, pm, store)[0]


def load_run(path: Path, pm=None, store: FeatureStore | None = None) -> tuple[TrainedModel, ProtocolData]:
    """A finished, evaluated run as a `TrainedModel`, and the read of its dataset that gave its
    classes and label embeddings (the features of that read are what `predict --dataset` scores)."""
    run = find_run(Path(path))
    spec, raw = load_spec(run)
    check_stages(run, spec)
    results = _results(run)
    if store is None:
        store = FeatureStore(raw["store"])
        if not store.location.exists():
            raise RunError(f"run {run} was trained on the store {raw['store']}, which is not there any more; "
                           "pass --store with the store's new place")
    data = load_protocol_data(store, spec.dataset, spec.split, "cpu", spec.legacy_label_order,
                              spec.label_parts, recorded_data(run, raw))
    info = store.info(spec.dataset)
    stage1, stage2 = (_head(spec, model, pm) for model in evaluated_models(run))
    names = data.class_names
    model = TrainedModel(
        head=stage2, spec=spec, beta=float(results["beta_star"]), class_names=list(names),
        prompt_names=list(info.get("prompt_names", names)), class_text=data.class_text.clone(),
        seen=[names[c] for c in data.sets.test.seen.tolist()],  # the classes evaluation adds β* to
        features=dict((info.get("provenance") or {}).get("features") or {}),
        templates=label_templates(store, spec.dataset, spec.label_parts),
        results=results, source=str(run), stage1_head=stage1,
        label_encoders=label_records(store, spec.dataset, spec.label_parts))
    return model, data


def label_records(store: FeatureStore, dataset: str, parts: tuple[str, ...]) -> dict[str, dict]:
    """What made each label embedding of `parts` (`FeatureStore.label_embedding_record`: `clipclap
    embed` records it, an imported dataset may); a part with no record is left out."""
    held = store.label_embedding_names(dataset)
    records = {part: store.label_embedding_record(dataset, part) for part in parts if part in held}
    return {part: record for part, record in records.items() if record}


def label_templates(store: FeatureStore, dataset: str, parts: tuple[str, ...]) -> dict[str, list[str]]:
    """The prompt templates each label embedding of `parts` was computed with (its record); a
    part imported without templates is left out."""
    out = {}
    for part, record in label_records(store, dataset, parts).items():
        templates = record.get("templates")
        if isinstance(templates, list) and all(isinstance(t, str) for t in templates):
            out[part] = list(templates)
    return out


def _results(run: Path) -> dict[str, Any]:
    """The run's results.json; a run not evaluated yet is refused, saying what to run."""
    if not (run / RESULTS).exists():
        raise RunError(f"run {run} is not evaluated yet: run `clipclap evaluate {run}` first")
    results = read_json(run / RESULTS)
    beta = results.get("beta_star") if isinstance(results, dict) else None
    if not isinstance(beta, int | float) or isinstance(beta, bool):
        raise RunError(f"{run / RESULTS} has no beta_star: evaluate the run again (`clipclap evaluate {run}`)")
    return results


def _head(spec: RunSpec, model: Path, pm=None) -> FusionHead:
    """A stage's model built for the run's spec and loaded, in eval mode, on the CPU."""
    head = build_head(spec, pm)
    state, _ = load_model(model)
    load_into(head, state, str(model))
    return head.eval()


def check_features(model, store: FeatureStore, dataset: str, info: dict) -> None:
    """Refuse features the model cannot take: of other widths than it was built for, or from
    other encoders (or weights, or frame recipe) than its provenance names."""
    held = store.feature_names(dataset)
    for modality in ("audio", "video"):
        if modality not in held:
            raise RunError(f"dataset {dataset!r} in {store} has no {modality} features "
                           "(run `clipclap import` or `clipclap extract` first)")
        width, wanted = held[modality]["shape"][1], model.spec.dims[modality]
        if width != wanted:
            raise RunError(f"{model.source} takes {wanted}-d {modality} features; dataset {dataset!r} in {store} "
                           f"has {width}-d ones")
    recorded = (info.get("provenance") or {}).get("features") or {}
    for modality in ("audio", "video"):
        ours, theirs = identity(model.features.get(modality)), identity(recorded.get(modality))
        if ours != theirs:
            raise RunError(f"dataset {dataset!r} in {store} holds {modality} features of {describe(theirs)}; "
                           f"{model.source} was trained on features of {describe(ours)}: extract the dataset "
                           "with the model's encoders (`clipclap extract`) or use a model trained on these")


def identity(provenance: dict | None) -> dict:
    """What identifies a modality's features (`IDENTITY`, and the frame recipe's name)."""
    provenance = provenance or {}
    out = {k: provenance[k] for k in IDENTITY if k in provenance}
    recipe = provenance.get("frame_recipe")
    if isinstance(recipe, dict) and "name" in recipe:
        out["frame_recipe"] = recipe["name"]
    return out


def describe(ident: dict) -> str:
    """An identity in words: `encoder clip (weights sha256 1a2b3c4d...)`, or an unknown origin."""
    if not ident:
        return "no recorded encoder (imported or generated)"
    text = f"encoder {ident.get('encoder', '?')}"
    weights = ident.get("weights_sha256") or ident.get("pretrained") or ident.get("model")
    if weights:
        text += f" (weights {str(weights)[:16]})"
    if ident.get("random_weights"):
        text += " (random weights)"
    if "frame_recipe" in ident:
        text += f", frame recipe {ident['frame_recipe']}"
    return text


def load_checkpoints(store: FeatureStore, dataset: str, split: str, head: str, params: list[str], stage1: Path,
                     stage2: Path, pm=None, grid: tuple[float, float, int] | None = None,
                     legacy_label_order: bool = False) -> TrainedModel:
    """A pair of published checkpoints (files or the reference's experiment folders, as
    `evaluate DATASET --stage1 A --stage2 B` takes them) as a `TrainedModel`: β* is the one that
    evaluation finds with the stage-1 model on the dataset's validation split."""
    from clipclap_cli.protocol import DEFAULT_BETA_GRID, TrainSettings
    from clipclap_cli.runs.checkpoints import load_checkpoint_file
    from clipclap_cli.runs.reference_checkpoints import evaluate_checkpoints
    from clipclap_cli.runs.spec import checked_head, store_dims

    results = evaluate_checkpoints(store, dataset, split, head, params, Path(stage1), Path(stage2), "cpu", pm,
                                   grid or DEFAULT_BETA_GRID, legacy_label_order)
    spec = RunSpec(dataset, split, head, results["params"], store_dims(store, dataset), TrainSettings(),
                   legacy_label_order=legacy_label_order)
    data = load_protocol_data(store, dataset, split, "cpu", legacy_label_order, spec.label_parts)
    heads = []
    for stage in ("stage1", "stage2"):
        state, _ = load_checkpoint_file(Path(results["checkpoints"][stage]))
        model = checked_head(spec, pm)
        load_into(model, {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                  results["checkpoints"][stage])
        heads.append(model.eval())
    info, names = store.info(dataset), data.class_names
    return TrainedModel(
        head=heads[1], spec=spec, beta=float(results["beta_star"]), class_names=list(names),
        prompt_names=list(info.get("prompt_names", names)), class_text=data.class_text.clone(),
        seen=[names[c] for c in data.sets.test.seen.tolist()],
        features=dict((info.get("provenance") or {}).get("features") or {}),
        templates=label_templates(store, dataset, spec.label_parts), results=results,
        source=f"{results['checkpoints']['stage1']} + {results['checkpoints']['stage2']}", stage1_head=heads[0],
        label_encoders=label_records(store, dataset, spec.label_parts))
