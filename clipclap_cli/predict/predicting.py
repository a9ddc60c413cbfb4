"""From a trained model and samples to prediction rows: the classes they are scored against
(the model's own, or names the user gave, embedded elsewhere) and which of them the model
trained on, then one ranking of every sample at once (`scoring.rank`)."""

from __future__ import annotations

import torch

from clipclap_cli.predict.output import prediction_rows
from clipclap_cli.predict.samples import Samples
from clipclap_cli.predict.scoring import rank


def seen_mask_of(model, names: list[str]) -> torch.Tensor:
    """Which of `names` the model trained on (β applies to those): a name of one of its seen
    classes, or the name its prompts were filled with for one."""
    prompt_of = dict(zip(model.class_names, model.prompt_names, strict=False))
    trained = set(model.seen) | {prompt_of[c] for c in model.seen if c in prompt_of}
    return torch.tensor([name in trained for name in names], dtype=torch.bool)


def predict_samples(model, samples: Samples, top_k: int, names: list[str] | None = None,
                    class_text: torch.Tensor | None = None) -> list[dict]:
    """Rows of the `top_k` best classes of every sample. Classes: `names` with their label
    embeddings `class_text` (in the model's text parts), or by default the model's own classes."""
    if names is None:
        names, class_text, seen = model.class_names, model.class_text, model.seen_mask
    else:
        seen = seen_mask_of(model, names)
    if not samples.ids:  # every video failed to decode: nothing to score (a head need not take 0 rows)
        return []
    scores, indices = rank(model, samples.audio, samples.video, class_text, seen, top_k)
    return prediction_rows(samples.ids, scores, indices, list(names), seen, samples.labels)
