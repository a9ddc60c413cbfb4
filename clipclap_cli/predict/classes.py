"""Class names a model was never trained on: read from the command line, embedded as its own
label embeddings were (`predict --classes`, `--classes-file`, `--prompts`).

A model compares videos with label embeddings; a new class name is one more row of them, and it
is only comparable when it is computed as the model's rows were: by the same text encoders, from
the same prompt templates, pooled the same way (`data/label_embeddings.label_matrix`, what
`clipclap embed` runs). The text encoder of each label part is the one of that name that made the
model's features (CLIP's text branch for the "clip" part, CLAP's for "clap"), rebuilt from what
they record; before it embeds new names it must give back the model's own label embedding of one
of its classes, so that an encoder with other weights is refused instead of scoring in another
space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clipclap_cli.errors import ClipclapError

MATCH_TOLERANCE = 1e-4
"How far (largest coordinate) a recomputed label embedding may lie from the model's own"


class ClassNamesError(ClipclapError):
    """Class names that cannot be used; the message names the culprit."""


def read_class_names(text: str | None, file: Path | None) -> list[str] | None:
    """The class names of `--classes "a,b,c"` or `--classes-file F` (one a line; blank lines at
    its end are no names), stripped; None when neither is given. An empty name, a name given
    twice (the text encoders lowercase, so case does not tell two apart), fewer than two names,
    or both options: one line naming the culprit."""
    if text is not None and file is not None:
        raise ClassNamesError("--classes and --classes-file: give the class names one way")
    if text is None and file is None:
        return None
    if file is not None:
        names = _read_lines(Path(file))
        return checked_class_names(names, [f"line {i + 1} of {file}" for i in range(len(names))])
    names = text.split(",")
    return checked_class_names(names, [f"name {i + 1} of --classes {text!r}" for i in range(len(names))])


def checked_class_names(names: list[str], places: list[str] | None = None) -> list[str]:
    """`names` stripped, each checked: not empty, not given twice (compared as the text encoders
    see them: lowercased, runs of spaces as one), two at least; else one line naming the culprit
    by its place (`places[i]`, default `classes[i]`)."""
    names = [str(n).strip() for n in names]
    where = places or [f"classes[{i}]" for i in range(len(names))]
    for name, place in zip(names, where, strict=True):
        if not name:
            raise ClassNamesError(f"{place} is empty: every class needs a name")
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        key = " ".join(name.casefold().split())
        if key in first:
            j = first[key]
            same = "is given twice" if names[j] == name else f"is the same name as {names[j]!r} ({where[j]})"
            raise ClassNamesError(f"class {name!r} ({where[i]}) {same}: each class once")
        first[key] = i
    if len(names) < 2:
        given = f"only one class ({names[0]!r})" if names else "no classes"
        raise ClassNamesError(f"{given}: a prediction picks among two or more")
    return names


def _read_lines(path: Path) -> list[str]:
    """The lines of a class-names file, less the blank lines at its end."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ClassNamesError(f"--classes-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClassNamesError(f"--classes-file {path}: cannot be read ({type(e).__name__})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ClassNamesError(f"--classes-file {path} names no classes (one a line)")
    return lines


def embed_class_names(model, names: list[str], prompts: Path | None, pm, device: str = "cpu") -> torch.Tensor:
    """(len(names), text dim) label embeddings of `names` for `model` (a `TrainedModel`), its
    label parts side by side in its order: each part's text encoder (see the module's doc)
    fills the templates (the model's, or `--prompts F`'s [<part>_text]) with each name."""
    from clipclap_cli.data.label_embeddings import label_matrix, read_templates

    blocks = []
    for part, width in model.spec.dims["text_parts"]:
        encoder = text_encoder(model, part, pm, device)
        own = model.templates.get(part)
        if prompts is not None:
            templates = read_templates(Path(prompts), f"{part}_text")
        elif own:
            templates = own
        else:
            raise ClassNamesError(f"the model records no prompt templates for its {part} label embeddings (they "
                                  f"were imported): pass --prompts FILE, a prompts.toml with [{part}_text] templates")
        if own and model.class_names:
            _check_reproduces(model, part, encoder, own)
        matrix = label_matrix(encoder, names, templates)
        if matrix.shape[1] != width:
            raise ClassNamesError(f"the {part} text encoder gives {matrix.shape[1]}-d label embeddings; the model "
                                  f"reads {width}-d ones")
        blocks.append(torch.from_numpy(matrix))
    return torch.cat(blocks, dim=1)


def text_encoder(model, part: str, pm, device: str = "cpu"):
    """The text encoder of label part `part`: the one the part's own record names (what made
    its label embeddings: `clipclap embed`, `embed --as`, an imported dataset's record), else the
    encoder of that name as the model's features record it (its parameters, weights), else that
    encoder with its defaults."""
    from clipclap_cli.api import offers_label_embeddings
    from clipclap_cli.plugins.encoder_records import recorded_encoder

    own = model.label_encoders.get(part)
    records = [r for r in (model.features or {}).values() if isinstance(r, dict) and r.get("encoder") == part]
    if isinstance(own, dict) and own.get("encoder"):
        records.insert(0, own)
    record = records[0] if records else {"encoder": part, "params": {}}
    encoder = recorded_encoder(record, pm, device, f"the model's {part} label embeddings")
    if not offers_label_embeddings(encoder):
        raise ClassNamesError(f"encoder {record['encoder']!r} computes no label embeddings (it has no label_embedding)")
    try:
        encoder.check_weights()
    except ClipclapError as e:
        if records:
            raise
        raise ClassNamesError(  # nothing recorded: the guess of the encoder's defaults is what failed
            f"the model's {part} label embeddings record no text encoder (imported, or an older demo store "
            f"whose demo text encoder was not yet recorded: `clipclap demo --no-train` rewrites it), and "
            f"{part!r} with its defaults cannot run here: {e}") from None
    return encoder


def _check_reproduces(model, part: str, encoder, templates: list[str]) -> None:
    """Refuse a text encoder that does not give back the model's label embedding of its first
    class (with the model's templates): other weights, another tokenizer vocabulary."""
    from clipclap_cli.api import FeatureDims
    from clipclap_cli.data.label_embeddings import label_matrix

    dims = FeatureDims(text_parts=tuple((n, w) for n, w in model.spec.dims["text_parts"]))
    own = model.class_text[:, dims.text_slice(part)].numpy()
    [again] = label_matrix(encoder, model.prompt_names[:1], templates)
    if again.shape[0] != own.shape[1]:
        raise ClassNamesError(f"the {part} text encoder here gives {again.shape[0]}-d label embeddings; the model's "
                              f"are {own.shape[1]}-d (another encoder made them)")
    gap = float(np.abs(own - again).max(axis=1).min())  # any row: the class order may be the reference's
    if gap > MATCH_TOLERANCE:
        raise ClassNamesError(f"the {part} text encoder here does not give the model's own label embedding of "
                              f"{model.prompt_names[0]!r} (off by {gap:.2g}): it is not the encoder that made them "
                              "(other weights or vocabulary); point it at the same files (its checkpoint and vocab "
                              "settings or environment variables)")
