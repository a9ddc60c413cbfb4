"""A run's test results: beta* from its stage-1 model on validation, its stage-2 model on test,
written to results.json (the evaluation itself is clipclap_cli.evaluate.evaluation).

The run's dataset is read once, checked inside that read against the digest the run recorded
(`recorded_data`), and handed down to the evaluation; nothing comes back here for more.
"""

from __future__ import annotations

from pathlib import Path

from clipclap_cli.data.protocol_data import ProtocolData, load_protocol_data
from clipclap_cli.errors import RunError
from clipclap_cli.evaluate.evaluation import evaluate_models
from clipclap_cli.runs.checkpoints import load_into, load_model
from clipclap_cli.runs.config import load_spec
from clipclap_cli.runs.files import RESULTS, evaluated_models
from clipclap_cli.runs.folder import cpu_threads, recorded_data, run_threads, stage_result, write_json
from clipclap_cli.runs.run_format import RUN_FORMAT
from clipclap_cli.runs.spec import RunSpec, build_head
from clipclap_cli.store.feature_store import FeatureStore


def evaluate_run(path: Path, store: FeatureStore | None = None, pm=None, data: ProtocolData | None = None) -> dict:
    """`clipclap evaluate RUN`: beta* from stage 1 on validation, stage-2 model on test
    (`data`: the run's dataset when the caller has it read and checked already), with the run's threads."""
    spec, raw = load_spec(path)
    with cpu_threads(run_threads(path, raw, None)):
        return evaluate_loaded_run(path, spec, raw, store, pm, data)


def evaluate_loaded_run(path: Path, spec: RunSpec, raw: dict, store: FeatureStore | None, pm,
                        data: ProtocolData | None) -> dict:
    """`evaluate_run` for a run whose config is read (`spec`, `raw`). `data`, when given, was read
    for this run and checked against what it recorded (training reads it so); else it is read here."""
    check_stages(path, spec)
    if data is None:
        if store is None:
            store = FeatureStore(raw["store"])
            if not store.location.exists():
                raise RunError(f"run {path} was trained on the store {raw['store']}, which is not there any more; "
                               "pass --store with the store's new place")
        data = load_protocol_data(store, spec.dataset, spec.split, spec.train.device, spec.legacy_label_order,
                                  spec.label_parts, recorded_data(path, raw))
    return write_results(path, spec, evaluate_models(data, *stage_models(path, spec, pm), tuple(spec.train.beta_grid)))


def check_stages(path: Path, spec: RunSpec) -> None:
    """Refuse a run without both stages finished, saying how to finish it."""
    for stage in (1, 2):
        if stage_result(path, stage) is None:
            raise RunError(f"run {path} has no completed stage {stage}; "
                           f"run `clipclap train {spec.dataset} --stage {stage} --run {path}`")


def stage_models(path: Path, spec: RunSpec, pm=None) -> list:
    """The two models the test protocol evaluates (stage 1's best, stage 2's final), built and loaded."""
    return [_load_stage_model(spec, model, pm) for model in evaluated_models(path)]


def write_results(path: Path, spec: RunSpec, results: dict) -> dict:
    """A run's evaluation (`evaluate_models`) with what identifies the run, written to its results.json."""
    results |= {"head": spec.head, "params": spec.params, "seed": spec.train.seed,
                "best_epoch": stage_result(path, 1)["best_epoch"], "run_format": RUN_FORMAT}
    write_json(path / RESULTS, results)
    return results


def _load_stage_model(spec: RunSpec, model: Path, pm=None):
    head = build_head(spec, pm).to(spec.train.device)
    state, _ = load_model(model)
    load_into(head, state, str(model))
    return head
