"""Label embeddings from text encoders and prompt templates (SPEC.md "Features and label embeddings").

Every template of the dataset's prompts file is filled with each class's prompt name; a CLIP
label embedding is the L2-normalised mean of the L2-normalised prompt embeddings (each encoder's
`label_embedding` pools its prompts). The result is stored as one label embedding, "clip" or
"clap" (the built-in encoders' own, or another encoder's with `embed --as`); training reads
them combined as [CLIP | CLAP].
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clipclap_cli.errors import ConfigError
from clipclap_cli.plugins.contracts import check_label_embedding
from clipclap_cli.store.feature_store import FeatureStore


def read_templates(path: Path, section: str) -> list[str]:
    """The `templates` list of table `section` of a prompts.toml."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such prompts file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    templates = data.get(section, {}).get("templates")
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ConfigError(f"{path} [{section}] templates: expected a list of strings with '{{}}'")
    return templates


def embed_labels(store: FeatureStore, dataset: str, encoder, templates: list[str], name: str,
                 on_class: Callable[[int], None] | None = None) -> np.ndarray:
    """Compute the label embedding of every class of `dataset` with `encoder`; store them as `name`."""
    names = store.info(dataset)["prompt_names"]
    rows = []
    for i, class_name in enumerate(names):
        rows.append(check_label_embedding(encoder, encoder.label_embedding([t.format(class_name) for t in templates])))
        if on_class is not None:
            on_class(i + 1)
    matrix = np.stack(rows).astype(np.float32)
    store.write_label_embeddings(dataset, name, matrix, {
        "encoder": encoder.encoder_id, "params": {k: str(v) for k, v in vars(encoder.params).items()},
        "templates": templates})
    return matrix
