"""A run's test results: beta* from its stage-1 model on validation, its stage-2 model on test,
written to results.json (the evaluation itself is clipclap_cli.evaluate.evaluation)."""

from __future__ import annotations

from pathlib import Path

from clipclap_cli.data.protocol_data import ProtocolData, load_protocol_data
from clipclap_cli.errors import RunError
from clipclap_cli.evaluate.evaluation import evaluate_models
from clipclap_cli.runs.checkpoints import load_into, load_model
from clipclap_cli.runs.folder import (
    check_same_data,
    cpu_threads,
    load_spec,
    run_threads,
    stage_result,
    write_json,
)
from clipclap_cli.runs.run_format import RUN_FORMAT
from clipclap_cli.runs.spec import RunSpec, build_head
from clipclap_cli.store.feature_store import FeatureStore


def evaluate_run(path: Path, store: FeatureStore | None = None, pm=None, data: ProtocolData | None = None) -> dict:
    """`clipclap evaluate RUN`: beta* from stage 1 on validation, stage-2 model on test
    (`data`: the run's dataset when the caller has it loaded already), with the run's threads."""
    spec, raw = load_spec(path)
    with cpu_threads(run_threads(path, raw, None)):
        return evaluate_loaded_run(path, spec, raw, store, pm, data)


def evaluate_loaded_run(path: Path, spec: RunSpec, raw: dict, store: FeatureStore | None, pm,
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


def _load_stage_model(path: Path, spec: RunSpec, name: str, pm=None):
    head = build_head(spec, pm).to(spec.train.device)
    state, _ = load_model(path / name)
    load_into(head, state, str(path / name))
    return head
