"""Label embeddings from text encoders and prompt templates (SPEC.md "Features and label embeddings").

Every template of the dataset's prompts file is filled with each class's prompt name; a CLIP
label embedding is the L2-normalised mean of the L2-normalised prompt embeddings (each encoder's
`label_embedding` pools its prompts). The result is stored as one label embedding, "clip" or
"clap" (the built-in encoders' own, or another encoder's with `embed --as`); training reads
them combined as [CLIP | CLAP].
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clipclap_cli.errors import ConfigError
from clipclap_cli.plugins.contracts import check_label_embedding
from clipclap_cli.store.feature_store import FeatureStore


def read_templates(path: Path, section: str) -> list[str]:
    """The `templates` list of table `section` of a prompts.toml, each template checked
    (`template_problem`): a missing, non-UTF-8 or malformed file, or a bad template, is one
    ConfigError naming the file and the template, before anything is encoded or written."""
    from clipclap_cli.data.datasets_toml import read_toml_text

    data = read_toml_text(Path(path), "prompts file")
    table = data.get(section, {})
    templates = table.get("templates") if isinstance(table, dict) else None
    if not isinstance(templates, list) or not templates:
        raise ConfigError(f"{path} [{section}] templates: expected a list of strings with '{{}}' for the class name")
    for i, template in enumerate(templates):
        problem = template_problem(template)
        if problem:
            raise ConfigError(f"{path} [{section}] templates[{i}] = {_shown(template)}: {problem}")
    return templates


def template_problem(template: object) -> str | None:
    """What is wrong with a prompt template, or None: it must be a string with `{}` (the class
    name) once and no other placeholder (`{x}`, `{0.y}`, `{:>9}`) nor a lone brace
    (`{{` and `}}` are literal braces)."""
    if not isinstance(template, str):
        return "expected a string with '{}' for the class name"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        return "a lone '{' or '}' (write {{ or }} for a literal brace)"
    for name, spec, conversion in fields:
        if name != "" or spec or conversion:
            written = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            return f"unknown placeholder {written}: only {{}} (the class name) is filled in"
    if len(fields) != 1:
        return "no '{}' for the class name" if not fields else "'{}' more than once: the class name fills one"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def label_matrix(encoder, names: list[str], templates: list[str],
                 on_class: Callable[[int], None] | None = None) -> np.ndarray:
    """The label embedding of each name, one row per name (C, dim) float32: every template filled
    with the name, pooled by the encoder's `label_embedding`. The one computation of label
    embeddings: `embed` stores it for a dataset's classes, `predict --classes` applies it to new
    names, so a dataset's class embedded either way gives the same row."""
    rows = []
    for i, class_name in enumerate(names):
        rows.append(check_label_embedding(encoder, encoder.label_embedding([t.format(class_name) for t in templates])))
        if on_class is not None:
            on_class(i + 1)
    return np.stack(rows).astype(np.float32)


def embed_labels(store: FeatureStore, dataset: str, encoder, templates: list[str], name: str,
                 on_class: Callable[[int], None] | None = None) -> np.ndarray:
    """Compute the label embedding of every class of `dataset` with `encoder`; store them as `name`."""
    matrix = label_matrix(encoder, store.info(dataset)["prompt_names"], templates, on_class)
    store.write_label_embeddings(dataset, name, matrix, {
        "encoder": encoder.encoder_id, "params": {k: str(v) for k, v in vars(encoder.params).items()},
        "templates": templates})
    return matrix
