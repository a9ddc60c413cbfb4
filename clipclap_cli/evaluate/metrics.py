"""GZSL metrics with calibrated stacking (SPEC.md "Evaluation"), vectorised over the bias grid.

For a bias beta added to seen-class distances, a sample is predicted as its nearest seen class
when `min_seen + beta < min_unseen` (ties go to the lower class id, as torch.min does), else as
its nearest unseen class. So one pass over the distance matrix gives both nearest classes, and
every beta of the grid costs only a comparison per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from clipclap_cli.metric_table import curves_of, figures_of
from clipclap_cli.protocol import SettingError, grid_problem

EPS = float(np.finfo(float).eps)

#: Predictions evaluated at once, (biases x samples): 2**24 keeps a chunk's buffers near 300 MB;
#: the reference grid (76 biases) on 100,000 samples is one chunk.
GRID_CHUNK_ELEMENTS = 1 << 24


def bias_grid(start: float = 0.0, stop: float = 5.0, steps: int = 76) -> torch.Tensor:
    """The reference's beta grid, linspace(0, 5, 76) (steps of 1/15), as float32. A grid that
    `protocol.grid_problem` refuses (NaN, infinity, more points than MAX_GRID_POINTS) is a
    SettingError here too: commands check their grid before any work, this is the last guard."""
    problem = grid_problem((start, stop, steps))
    if problem:
        raise SettingError("beta_grid", f"bias grid {start!r}:{stop!r}:{steps!r}: {problem}", problem)
    return torch.from_numpy(np.linspace(start, stop, steps)).to(torch.float32)


@dataclass
class GZSLResult:
    """Seen, unseen, harmonic-mean and zero-shot accuracy (fractions) at bias `beta`: the
    computed values that `metric_table.METRIC_TABLE`'s rows read (a new metric adds its field here).

    `per_class_recall` is the reference's: the ZSL recall of each unseen class, 0 elsewhere
    (indexed by class id). `per_class_accuracy` is the GZSL accuracy of every class of the split
    at `beta` (0 for classes outside it).
    """

    seen: float
    unseen: float
    hm: float
    zsl: float
    beta: float
    per_class_recall: list[float] = field(default_factory=list)
    per_class_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Every metric of the table (`figures_of`), the bias and the per-class figures."""
        return {**figures_of(self), "beta": self.beta, "per_class_recall": self.per_class_recall,
                "per_class_accuracy": self.per_class_accuracy}


@dataclass
class GridResult:
    """The best point of the bias grid plus the whole S/U/HM curve (the table's metrics with
    `over_grid`)."""

    best: GZSLResult
    betas: list[float]
    seen: list[float]
    unseen: list[float]
    hm: list[float]

    def as_dict(self) -> dict:
        return {"best": self.best.as_dict(), "curve": {"beta": self.betas, **curves_of(self)}}


def _nearest(dist: torch.Tensor, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, pos = dist[:, columns].min(dim=1)
    return values, columns[pos]


def _recalls(pred: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class recall for each row of `pred` (B, N) -> (B, num_classes), float32."""
    counts = torch.bincount(targets, minlength=num_classes).to(torch.float32)
    hits = torch.zeros(pred.shape[0], num_classes, dtype=torch.float32)
    hits.scatter_add_(1, targets.expand_as(pred), (pred == targets).to(torch.float32))
    return torch.where(counts > 0, hits / counts.clamp(min=1), torch.zeros(()))


def evaluate_distances(
    dist: torch.Tensor,
    targets: torch.Tensor,
    seen_ids: torch.Tensor,
    unseen_ids: torch.Tensor,
    betas: torch.Tensor | None = None,
    fixed_beta: float | None = None,
    num_classes: int | None = None,
) -> GridResult:
    """Calibrated-stacking evaluation of a distance matrix.

    Args:
        dist: (N, K) Euclidean distances; column k is class `column_ids[k]` where the columns are
            `sorted(seen_ids ∪ unseen_ids)` (ascending class id).
        targets: (N,) class ids.
        seen_ids, unseen_ids: class ids of the split.
        betas: the grid (default linspace(0, 5, 76)); ignored when `fixed_beta` is given.
        fixed_beta: evaluate only this bias (the test-time path).
        num_classes: length of `per_class_recall` (ids run 0..num_classes-1).

    Returns:
        GridResult whose `best` is the first (smallest) beta with the highest HM.
    """
    seen_ids, unseen_ids = seen_ids.to(torch.long), unseen_ids.to(torch.long)
    column_ids = torch.sort(torch.cat([seen_ids, unseen_ids])).values
    num_classes = int(num_classes if num_classes is not None else column_ids.max() + 1)
    dist = dist.to(torch.float32)
    full = torch.full((dist.shape[0], num_classes), torch.inf, dtype=torch.float32)
    full[:, column_ids] = dist
    d_seen, p_seen = _nearest(full, seen_ids.sort().values)
    d_unseen, p_unseen = _nearest(full, unseen_ids.sort().values)
    if fixed_beta is not None:
        betas = torch.tensor([fixed_beta], dtype=torch.float32)
    elif betas is None:
        betas = bias_grid()
    d_un, seen_wins_ties = d_unseen[None, :], (p_seen < p_unseen)[None, :]
    targets = targets.to(torch.long)

    def recalls_at(b: torch.Tensor) -> torch.Tensor:
        """Per-class recall (len(b), num_classes) of the predictions at the biases `b`."""
        shifted = d_seen[None, :] + b[:, None]  # float32, as the reference adds beta to distances
        take_seen = (shifted < d_un) | ((shifted == d_un) & seen_wins_ties)
        return _recalls(torch.where(take_seen, p_seen[None, :], p_unseen[None, :]), targets, num_classes)

    # the grid in chunks of biases, so that a fine grid on a large split fits in memory; every
    # bias's numbers are computed row by row, so they do not depend on the chunking
    step = max(1, GRID_CHUNK_ELEMENTS // max(1, len(targets)))
    seen_parts, unseen_parts = [], []
    for start in range(0, len(betas), step):
        recalls = recalls_at(betas[start:start + step])
        seen_parts.append(recalls[:, seen_ids].mean(dim=1))
        unseen_parts.append(recalls[:, unseen_ids].mean(dim=1))
    seen_acc, unseen_acc = torch.cat(seen_parts), torch.cat(unseen_parts)
    hm = (2 * seen_acc.double() * unseen_acc.double()) / (seen_acc.double() + unseen_acc.double() + EPS)
    zsl_recall = torch.zeros(num_classes, dtype=torch.float32)
    zsl_recall[unseen_ids] = _recalls(p_unseen[None, :], targets, num_classes)[0, unseen_ids]
    zsl = float(zsl_recall[unseen_ids].mean())
    best = int(torch.argmax(hm))  # first maximum: the smallest beta wins ties
    result = GZSLResult(float(seen_acc[best]), float(unseen_acc[best]), float(hm[best]), zsl,
                        float(betas[best]), zsl_recall.tolist(), recalls_at(betas[best:best + 1])[0].tolist())
    return GridResult(result, betas.tolist(), seen_acc.tolist(), unseen_acc.tolist(), hm.tolist())


def beta_star(val_betas: dict[str, float]) -> float:
    """beta* for the test split from the stage-1 model's validation betas (BASELINES.md 3.4).

    The reference averages the audio, video and both betas and adds 1e-10 before dividing by
    three. A head that only answers "both" has three identical betas.
    """
    both = val_betas["both"]
    total = sum(val_betas.get(m, both) for m in ("audio", "video", "both"))
    return (total + 1e-10) / 3
