"""The training-free head as a trained model (`predict --head zeroshot`): CLIP's and CLAP's own
zero-shot classifiers (plugins/heads_zeroshot.py), which need no run.

It is a `TrainedModel` like any other, so that every way of predicting takes it: β is 0 and no
class is seen (nothing was trained). With a stored dataset it reads that dataset's widths,
classes, label embeddings, their templates and the provenance of its features (so `--videos`
are encoded as the dataset's were). Without one, its encoders are the built-in CLIP and CLAP
with their default parameters (or those of `-e ENCODER:KEY=VALUE`), the frame recipe `clean`,
and generic prompt templates; it has no classes of its own, so the caller names them.
"""

from __future__ import annotations

import torch

from clipclap_cli.errors import ClipclapError
from clipclap_cli.runs.trained import TrainedModel, label_records, label_templates

DEFAULT_TEMPLATES = {"clip": ["a photo of a {}."], "clap": ["This is a sound of {}."]}
"""The templates of the zeroshot head without a dataset: CLIP's ImageNet default prompt and
LAION-CLAP's zero-shot audio prompt"""
BUILT_IN = (("video", "clip"), ("audio", "clap"))
"The encoders of the zeroshot head without a dataset, by modality"


def zeroshot_model(pm, store=None, dataset: str | None = None, *, split: str | None = None,
                   encoder_params: dict[str, list[str]] | None = None,
                   params: dict | None = None) -> TrainedModel:
    """The zeroshot head (with head parameters `params`, e.g. {"audio_weight": "0.3"}) as a
    `TrainedModel`: on `dataset` of `store` when given (`split`: the one its partitions come
    from, default the dataset's only split), else on the built-in encoders, whose parameters
    `encoder_params` ({"clip": ["model=..."], ...}, as `extract -e` groups them) set."""
    from clipclap_cli.params import build_params
    from clipclap_cli.plugins.registry import get_head

    head_cls = get_head("zeroshot", pm)
    hp = build_params(head_cls.Params, params or {}, where="head zeroshot")
    if dataset is not None:
        if store is None:
            raise ClipclapError(f"the zeroshot head on dataset {dataset!r} needs the store that holds it (--store)")
        if encoder_params:
            raise ClipclapError(f"-e sets the encoders of the zeroshot head without --dataset; dataset {dataset!r} "
                                "records the encoders of its features")
        return _on_dataset(pm, store, dataset, split, head_cls, hp)
    return _on_encoders(pm, encoder_params or {}, hp)


def _on_dataset(pm, store, dataset: str, split: str | None, head_cls, hp) -> TrainedModel:
    """The zeroshot head on a stored dataset: its widths, classes, label embeddings (checked to
    be those the head reads), templates and feature provenance, in one consistent read."""
    from clipclap_cli.runs.spec import check_label_parts, store_dims

    with store.consistent_read(dataset):
        dims = store_dims(store, dataset)
        check_label_parts(store, dataset, dims, head_cls, hp)
        parts = tuple(name for name, _ in dims["text_parts"])
        class_text = torch.cat([torch.from_numpy(store.read_label_embeddings(dataset, p)) for p in parts], dim=1)
        info = store.info(dataset)
        templates, made = label_templates(store, dataset, parts), label_records(store, dataset, parts)
        held = store.split_names(dataset)
    if split is None:
        split = held[0] if len(held) == 1 else ""
    classes = list(info["classes"])
    model = _model(pm, hp, dims, dataset, split, classes, list(info.get("prompt_names", classes)), class_text,
                   dict((info.get("provenance") or {}).get("features") or {}), templates,
                   f"the zeroshot head on {dataset!r}")
    model.label_encoders = made  # the text encoders of its label parts, for --classes
    return model


def _on_encoders(pm, encoder_params: dict[str, list[str]], hp) -> TrainedModel:
    """The zeroshot head on the built-in encoders (their parameters from `encoder_params`): no
    classes; features recorded as `extract` would record them, so `--videos` encodes alike."""
    from clipclap_cli.frame_recipes import DEFAULT, get_recipe
    from clipclap_cli.params import build_params, pairs_to_dict
    from clipclap_cli.plugins.registry import get_encoder

    names = dict(BUILT_IN).values()
    stray = sorted(set(encoder_params) - set(names))
    if stray:
        raise ClipclapError(f"-e {stray[0]}:...: the zeroshot head without --dataset encodes with "
                            f"{' and '.join(names)}")
    features, widths = {}, {}
    for modality, name in BUILT_IN:
        cls = type(get_encoder(name, pm))
        enc = cls(build_params(cls.Params, pairs_to_dict(encoder_params.get(name, [])), where=f"encoder {name}"))
        record = {"encoder": name, "params": {k: str(v) for k, v in vars(enc.params).items() if k != "device"}}
        if modality == "video":
            record |= {"frame_recipe": get_recipe(DEFAULT).as_dict(), "frames": 1}
        features[modality], widths[modality] = record, enc.dim
    dims = {"audio": widths["audio"], "video": widths["video"],
            "text_parts": [["clip", widths["video"]], ["clap", widths["audio"]]]}  # each encoder's text is its width
    text = sum(w for _, w in dims["text_parts"])
    return _model(pm, hp, dims, "", "", [], [], torch.zeros((0, text)), features,
                  {part: list(t) for part, t in DEFAULT_TEMPLATES.items()}, "the zeroshot head")


def _model(pm, hp, dims: dict, dataset: str, split: str, classes: list[str], prompt_names: list[str],
           class_text: torch.Tensor, features: dict, templates: dict, source: str) -> TrainedModel:
    """The head built for `dims` (eval mode), β 0, no class seen, no results."""
    import dataclasses

    from clipclap_cli.protocol import TrainSettings
    from clipclap_cli.runs.spec import RunSpec, build_head

    spec = RunSpec(dataset=dataset, split=split, head="zeroshot", params=dataclasses.asdict(hp), dims=dims,
                   train=TrainSettings())
    return TrainedModel(head=build_head(spec, pm).eval(), spec=spec, beta=0.0, class_names=classes,
                        prompt_names=prompt_names, class_text=class_text.float(), seen=[], features=features,
                        templates=templates, results=None, source=source)
