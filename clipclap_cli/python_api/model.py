"""A trained model for a notebook or a script (`clipclap_cli.api.load_model`): predictions from
feature arrays, from videos or from a stored dataset, and scores per class.

Every path goes through what `clipclap predict` runs (runs/trained.py loads the model,
predict/ scores and ranks, extract/video_features.py encodes videos), so a row here is the row
the command writes as JSON: `{"id", "label" (stored samples only), "predictions": [{"class",
"score", "seen"}, ...]}`, best first, score = -(distance + β for a class the model trained on).
Results are plain Python and NumPy; the torch objects stay inside (`Model.trained`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipclap_cli.errors import ClipclapError
from clipclap_cli.predict.output import failed_rows
from clipclap_cli.predict.predicting import predict_samples, seen_mask_of
from clipclap_cli.predict.samples import TEST_PARTITIONS, Samples, stored_samples
from clipclap_cli.predict.scoring import distances
from clipclap_cli.python_api.stored import Store
from clipclap_cli.runs.trained import TrainedModel, load_trained
from clipclap_cli.store.feature_store import FeatureStore


class Model:
    """A trained head with its classes, the bias β of its evaluation and its encoders' record.

    Attributes: `classes` (its own classes, by class id), `seen` (those it trained on: β is
    added to their distances), `beta`, `dataset`, `results` (its test figures, or None),
    `source` (what it was loaded from), `trained` (the `TrainedModel` underneath)."""

    def __init__(self, trained: TrainedModel, pm=None):
        self.trained, self._pm = trained, pm

    def __repr__(self) -> str:
        return f"Model({self.source!r}, head={self.trained.spec.head!r}, {len(self.classes)} classes)"

    @property
    def classes(self) -> list[str]:
        return list(self.trained.class_names)

    @property
    def seen(self) -> list[str]:
        return list(self.trained.seen)

    @property
    def beta(self) -> float:
        return float(self.trained.beta)

    @property
    def dataset(self) -> str:
        return self.trained.spec.dataset

    @property
    def results(self) -> dict | None:
        return self.trained.results

    @property
    def source(self) -> str:
        return self.trained.source

    @property
    def pm(self):
        """The plugin manager the text and video encoders come from (the installed plugins)."""
        if self._pm is None:
            from clipclap_cli.plugins.manager import get_plugin_manager

            self._pm = get_plugin_manager()
        return self._pm

    # ------------------------------------------------------------------ scoring
    def scores(self, audio: Any, video: Any, classes: Sequence[str] | None = None,
               prompts: str | Path | None = None) -> np.ndarray:
        """(N, C) float32: each sample's score for each class, -(distance + β for the classes the
        model trained on); columns in the order of `classes` (default: `self.classes`). The
        highest score of a row is `predict`'s first class."""
        names, class_text, seen = self._classes(classes, prompts)
        a, v = self._features(audio, video)
        if not len(a):
            return np.zeros((0, len(names)), np.float32)
        dist = distances(self.trained.head, a, v, class_text)
        beta = torch.tensor(self.beta, dtype=torch.float32)
        return (-torch.where(seen[None, :], dist + beta, dist)).numpy()

    def predict(self, audio: Any, video: Any, classes: Sequence[str] | None = None, top_k: int = 5,
                ids: Sequence[str] | None = None, prompts: str | Path | None = None) -> list[dict]:
        """The `top_k` best classes of each sample, from feature arrays (numpy or torch, (N, d)
        each); `ids` name the rows (default: "0", "1", ...); `classes`: names to choose from,
        embedded with the model's text encoders (`prompts`: a prompts.toml; default its own)."""
        a, v = self._features(audio, video)
        ids = [str(i) for i in range(len(a))] if ids is None else [str(i) for i in ids]
        if len(ids) != len(a):
            raise ClipclapError(f"{len(ids)} ids for {len(a)} samples: give one id per row")
        return self._rows(Samples(ids, None, a, v), classes, top_k, prompts)

    def predict_videos(self, paths: Sequence[str | Path], classes: Sequence[str] | None = None, top_k: int = 5,
                       prompts: str | Path | None = None, workers: int = 0,
                       on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Rows for video files, their features extracted as the model's were (its encoders,
        weights and frame recipe; needs the `[extract]` extra). A video that does not decode
        gets a row with its `error` and no predictions; the others go on. `on_progress(done,
        total)`: after each chunk of videos."""
        from clipclap_cli.extract.video_features import features_of_videos

        paths = [Path(p) for p in paths]
        if not paths:
            raise ClipclapError("no videos given")
        names, class_text, _ = self._classes(classes, prompts)  # refused before any video is read
        ids, audio, video, failed = features_of_videos(paths, self.trained.features, self.pm, workers,
                                                       on_progress=on_progress)
        samples = Samples(list(ids), None, torch.as_tensor(audio), torch.as_tensor(video))
        return self._rank(samples, names if classes is not None else None, class_text, top_k) + failed_rows(failed)

    def predict_dataset(self, store: str | Path | Store | FeatureStore, dataset: str | None = None,
                        partition: str | Sequence[str] | None = None, classes: Sequence[str] | None = None,
                        top_k: int = 5, split: str | None = None, prompts: str | Path | None = None) -> list[dict]:
        """Rows for a stored dataset's videos (default: the model's dataset), with their labels:
        `partition` one or several of the split's (default: the test ones, seen then unseen; `all`:
        every video), of `split` (default: the model's). The features must come from the
        encoders the model's did."""
        fs = _feature_store(store)
        partitions = (partition,) if isinstance(partition, str) else tuple(partition or TEST_PARTITIONS)
        names, class_text, _ = self._classes(classes, prompts)  # refused before the dataset is read
        samples = stored_samples(fs, dataset or self.dataset, split or self.trained.spec.split,
                                 partitions, self.trained)
        return self._rank(samples, names if classes is not None else None, class_text, top_k)

    # ------------------------------------------------------------------ the pieces
    def _rows(self, samples: Samples, classes, top_k: int, prompts) -> list[dict]:
        names, class_text, _ = self._classes(classes, prompts)
        return self._rank(samples, names if classes is not None else None, class_text, top_k)

    def _rank(self, samples: Samples, names, class_text, top_k: int) -> list[dict]:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ClipclapError(f"top_k={top_k!r}: expected a whole number of at least 1")
        return predict_samples(self.trained, samples, top_k, names, class_text if names is not None else None)

    def _classes(self, classes, prompts) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """The names scored against, their label embeddings and which the model trained on."""
        if classes is None:
            if prompts is not None:
                raise ClipclapError("prompts embed the names given as `classes`; give them too")
            if not self.classes:
                raise ClipclapError(f"{self.source} has no classes of its own: give `classes`")
            return self.classes, self.trained.class_text, self.trained.seen_mask
        from clipclap_cli.predict.classes import embed_class_names

        names = _checked_names(classes)
        text = embed_class_names(self.trained, names, None if prompts is None else Path(prompts), self.pm)
        return names, text, seen_mask_of(self.trained, names)

    def _features(self, audio: Any, video: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The arrays as float32 tensors on the CPU, checked: two dimensions, one row per sample
        in both, the widths the model was built for."""
        out = []
        for modality, values in (("audio", audio), ("video", video)):
            tensor = torch.as_tensor(np.asarray(values.detach().cpu() if torch.is_tensor(values) else values),
                                     dtype=torch.float32)
            width = self.trained.spec.dims[modality]
            if tensor.ndim != 2 or tensor.shape[1] != width:
                raise ClipclapError(f"{modality}: expected an array of shape (N, {width}), got {tuple(tensor.shape)}")
            if not torch.isfinite(tensor).all():
                raise ClipclapError(f"{modality}: holds NaN or infinite values")
            out.append(tensor)
        if len(out[0]) != len(out[1]):
            raise ClipclapError(f"audio has {len(out[0])} rows and video {len(out[1])}: one row per sample in both")
        return out[0], out[1]


def _checked_names(classes: Sequence[str]) -> list[str]:
    """The class names given, checked as `predict --classes` checks them
    (`predict.classes.checked_class_names`); one string is refused, not split into letters."""
    from clipclap_cli.predict.classes import checked_class_names

    if isinstance(classes, str):
        raise ClipclapError(f"classes={classes!r}: give a list of names, not one string")
    return checked_class_names(list(classes))


def _feature_store(store: str | Path | Store | FeatureStore) -> FeatureStore:
    if isinstance(store, Store):
        return store.feature_store
    return store if isinstance(store, FeatureStore) else FeatureStore(store)


def load_model(path: str | Path | None = None, *, head: str | None = None, store: Any = None,
               dataset: str | None = None, pm=None) -> Model:
    """A trained model: a run folder (finished and evaluated) or a model file (`clipclap
    export`); or, with `head="zeroshot"` and no path, CLIP/CLAP zero-shot classification, with
    the classes, label embeddings and encoders of `dataset` in `store` when given. `store`: where
    a run's dataset now lies, when not where the run recorded it."""
    fs = None if store is None else _feature_store(store)
    if head is not None:
        if head != "zeroshot" or path is not None:
            raise ClipclapError(f"head={head!r}: only 'zeroshot' (no training) goes without a path; a trained "
                                "head is loaded from its run folder or model file")
        from clipclap_cli.predict.zeroshot import zeroshot_model

        if dataset is not None and fs is None:
            raise ClipclapError(f"dataset={dataset!r}: give the store that holds it too")
        pm = pm or _plugins()
        return Model(zeroshot_model(pm, fs, dataset), pm)
    if path is None:
        raise ClipclapError("give the path of a run folder or of a model file, or head='zeroshot'")
    return Model(load_trained(Path(path), pm, fs), pm)


def _plugins():
    from clipclap_cli.plugins.manager import get_plugin_manager

    return get_plugin_manager()

