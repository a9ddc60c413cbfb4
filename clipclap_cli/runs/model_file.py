"""A model file (`clipclap export RUN -o NAME.clipclap`): one safetensors file that holds a
trained model whole, to use with no run folder and no store of the run's.

Tensors: the stage-2 final model (`stage2.<name>`), the stage-1 best model (`stage1.<name>`,
which `evaluate` calibrates β* with) and the label embeddings of the classes (`class_text`).
The safetensors header's `__metadata__` holds one JSON text under `clipclap_model`: the format
version, the head and its parameters and spec, β*, the classes with their prompt names and
whether each was trained on, the prompt templates, the features' provenance (encoders, weights'
hashes, frame recipe), what made each label part's embeddings (`label_encoders`, absent from
files written before it was recorded), the clipclap version and the run's test figures. Reading
it unpickles nothing; a file of a newer format, or with a header that is not one, is refused in
one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from clipclap_cli.errors import CheckpointError
from clipclap_cli.protocol import TrainSettings
from clipclap_cli.runs.checkpoints import load_into
from clipclap_cli.runs.spec import RunSpec, build_head

FORMAT = "clipclap-model"
FORMAT_VERSION = 1
HEADER_KEY = "clipclap_model"
SUFFIX = ".clipclap"
#: results.json's fields a model file keeps: the test figures and what they are of
RESULT_FIELDS = ("dataset", "split", "beta_star", "test", "classes", "head", "params", "seed", "best_epoch", "units")


def model_file_bytes(model, data_digest: str | None = None) -> bytes:
    """A `TrainedModel` loaded from a run (with its stage-1 model) as a model file's bytes."""
    from safetensors.torch import save

    from clipclap_cli import __version__

    if model.stage1_head is None:
        raise CheckpointError(f"{model.source}: no stage-1 model to export")
    seen = set(model.seen)
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "clipclap_version": __version__,
        "head": model.spec.head, "params": model.spec.params, "spec": model.spec.as_dict(), "beta": model.beta,
        "classes": [{"name": n, "prompt_name": p, "seen": n in seen}
                    for n, p in zip(model.class_names, model.prompt_names, strict=True)],
        "templates": model.templates, "features": model.features, "data_digest": data_digest,
        "label_encoders": model.label_encoders,
        "results": {k: model.results[k] for k in RESULT_FIELDS if k in (model.results or {})},
        "source": Path(model.source).name,
    }
    tensors = {f"stage2.{k}": v for k, v in model.head.state_dict().items()}
    tensors |= {f"stage1.{k}": v for k, v in model.stage1_head.state_dict().items()}
    tensors["class_text"] = model.class_text
    return save({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                metadata={HEADER_KEY: json.dumps(header, sort_keys=True, allow_nan=False)})


def read_header(path: Path) -> dict[str, Any]:
    """A model file's header, checked: its format and version, and the fields a model needs."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            text = (fh.metadata() or {}).get(HEADER_KEY)
    except Exception as e:  # safetensors' errors, of several kinds
        raise CheckpointError(f"{path} is not a clipclap model file (not a safetensors file: "
                              f"{type(e).__name__}: {str(e)[:80]})") from None
    if text is None:
        raise CheckpointError(f"{path} is not a clipclap model file (its header has no {HEADER_KEY!r}; "
                              "a run's model file is exported with `clipclap export RUN -o NAME.clipclap`)")
    try:
        header = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{path}: its header is not JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: its header is not a clipclap model's (format {_get(header, 'format')!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: its header's format_version {version!r} is not a version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} is a model file of format {version}, written by clipclap "
                              f"{header.get('clipclap_version', '?')}; this clipclap reads format {FORMAT_VERSION} "
                              "and older: upgrade clipclap")
    problem = _header_problem(header)
    if problem:
        raise CheckpointError(f"{path}: its header is malformed ({problem})")
    return header


def read_model_file(path: Path, pm=None):
    """The `TrainedModel` a model file holds (both stages' heads built and loaded, eval mode)."""
    from safetensors.torch import load_file

    from clipclap_cli.runs.trained import TrainedModel

    path = Path(path)
    header = read_header(path)
    spec = _spec(header["spec"], path)
    try:
        tensors = load_file(str(path))
    except Exception as e:  # a truncated copy passes the header and fails here
        raise CheckpointError(f"{path} is damaged ({type(e).__name__}: {str(e)[:100]})") from None
    for name, tensor in sorted(tensors.items()):  # a run exports finite weights only: anything else is damage
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values (the file is damaged; "
                                  "export the run again)")
    heads = []
    for stage in ("stage1", "stage2"):
        head = build_head(spec, pm)
        prefix = f"{stage}."
        load_into(head, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, f"{path} {stage}")
        heads.append(head.eval())
    classes = header["classes"]
    class_text = tensors.get("class_text")
    width = sum(w for _, w in spec.dims["text_parts"])
    if class_text is None or tuple(class_text.shape) != (len(classes), width):
        raise CheckpointError(f"{path}: its class_text is not ({len(classes)}, {width}) label embeddings")
    results = header.get("results") or None
    return TrainedModel(
        head=heads[1], spec=spec, beta=float(header["beta"]), class_names=[c["name"] for c in classes],
        prompt_names=[c["prompt_name"] for c in classes], class_text=class_text.to(torch.float32),
        seen=[c["name"] for c in classes if c["seen"]], features=header["features"], templates=header["templates"],
        results=results, source=str(path), stage1_head=heads[0],
        label_encoders=header.get("label_encoders", {}))  # a file written before it was recorded has none


def _spec(s: dict, path: Path) -> RunSpec:
    """The header's spec as a RunSpec; one line when it is not one."""
    try:
        return RunSpec(s["dataset"], s["split"], s["head"], dict(s["params"]), dict(s["dims"]),
                       TrainSettings(**s["train"]), dict(s.get("variant", {})), bool(s.get("legacy_label_order")),
                       dict(s.get("protocol_defaults", {})))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its header's spec is malformed ({type(e).__name__}: {e})") from None


def _header_problem(h: dict) -> str | None:
    """The first field of a header that a model cannot be loaded from, or None."""
    if not isinstance(h.get("spec"), dict):
        return "no spec"
    beta = h.get("beta")
    if not isinstance(beta, int | float) or isinstance(beta, bool) or beta != beta or abs(beta) == float("inf"):
        return f"beta {beta!r} is not a finite number"
    classes = h.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("prompt_name"), str)
            and isinstance(c.get("seen"), bool) for c in classes):
        return "classes: expected a list of {name, prompt_name, seen}"
    if len({c["name"] for c in classes}) != len(classes):
        return "classes: a name twice"
    for key in ("features", "templates"):
        if not isinstance(h.get(key), dict):
            return f"{key}: expected a table"
    if not isinstance(h.get("label_encoders", {}), dict):
        return "label_encoders: expected a table"
    return None


def _get(header: Any, key: str) -> Any:
    return header.get(key) if isinstance(header, dict) else None


def evaluate_model_file(path: Path, store, pm=None) -> dict[str, Any]:
    """`clipclap evaluate MODEL.clipclap --store S`: the test protocol for the file's two models on
    the dataset it names in `store` (its features checked against the file's encoders), with the
    label embeddings the file holds, so that it gives the run's results on the run's data."""
    import dataclasses

    from clipclap_cli.data.protocol_data import load_protocol_data
    from clipclap_cli.evaluate.evaluation import evaluate_models
    from clipclap_cli.runs.trained import check_features

    model = read_model_file(path, pm)
    spec = model.spec
    with store.consistent_read(spec.dataset):
        check_features(model, store, spec.dataset, store.info(spec.dataset))
    data = load_protocol_data(store, spec.dataset, spec.split, "cpu", spec.legacy_label_order, spec.label_parts)
    if data.class_names != model.class_names:
        raise CheckpointError(f"dataset {spec.dataset!r} in {store} has other classes than {path} was trained on")
    data = dataclasses.replace(data, class_text=model.class_text)  # the embeddings as trained
    results = evaluate_models(data, model.stage1_head, model.head, tuple(spec.train.beta_grid))
    return results | {"head": spec.head, "params": spec.params, "seed": spec.train.seed,
                      "best_epoch": (model.results or {}).get("best_epoch"), "model_file": str(path)}
