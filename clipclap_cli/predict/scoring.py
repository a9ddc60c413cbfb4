"""Scoring samples against classes: a trained head's distances, calibrated as evaluation does
(β added to the distances of the classes the model trained on), ranked best first.

The first class of every row is evaluation's decision (evaluate/metrics.py) sample for sample:
the nearest seen class at its own distance plus β, in float32, against the nearest unseen
class, a tie going to the lower class index. The rest of the row is every other class by its
calibrated distance, ties again to the lower index (as a stable sort orders them), all at once,
no loop over samples.
"""

from __future__ import annotations

import numpy as np
import torch

from clipclap_cli.plugins.contracts import check_distances, head_code


def distances(head, audio: torch.Tensor, video: torch.Tensor, class_text: torch.Tensor) -> torch.Tensor:
    """The head's "both" distances (N, C) in eval mode, as evaluation computes them (one call)."""
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad(), head_code(head, "distances"):
            dists = head.distances(audio, video, class_text)
        return check_distances(head, dists, len(audio), len(class_text))["both"].to(torch.float32)
    finally:
        head.train(was_training)


def rank(model, audio: torch.Tensor, video: torch.Tensor, class_text: torch.Tensor, seen_mask: torch.Tensor,
         top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, k) scores and class indices (columns of `class_text`), best first, k = min(top_k, C).
    score = -(distance + β if the class is seen), β being `model.beta` (`seen_mask`: (C,) bool)."""
    return rank_distances(distances(model.head, audio, video, class_text), seen_mask, model.beta, top_k)


def rank_distances(dist: torch.Tensor, seen_mask: torch.Tensor, beta: float,
                   top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`rank` for distances already computed (N, C)."""
    dist = dist.to(torch.float32)
    k = max(1, min(int(top_k), dist.shape[1]))
    seen = seen_mask.to(torch.bool).to(dist.device)
    shifted = torch.where(seen[None, :], dist + torch.tensor(beta, dtype=torch.float32), dist)
    order = sorted_columns(shifted, k)
    decision = _decision(dist, seen, beta)
    # the decision first, then the sorted order without it: it is nearly always order[:, 0]
    # already (float32 rounding of distance + β can make it differ, between equal scores only)
    rows = torch.nonzero(order[:, 0] != decision).flatten()
    if len(rows):
        order[rows] = _first(order[rows], decision[rows])
    return -torch.gather(shifted, 1, order), order


def _first(order: torch.Tensor, decision: torch.Tensor) -> torch.Tensor:
    """Each row of `order` with `decision` moved to its front (or put there, the last dropped)."""
    n, k = order.shape
    found = order == decision[:, None]
    where = torch.where(found.any(dim=1), found.to(torch.int8).argmax(dim=1), torch.full((n,), k - 1))
    cols = torch.arange(k)[None, :].expand(n, k)
    order = torch.gather(order, 1, torch.where(cols <= where[:, None], cols - 1, cols).clamp(min=0))
    order[:, 0] = decision
    return order


def _decision(dist: torch.Tensor, seen: torch.Tensor, beta: float) -> torch.Tensor:
    """Evaluation's top-1 (metrics.evaluate_distances): nearest seen class at distance + β
    against nearest unseen class, ties to the lower class index; a side without classes never wins."""
    seen_cols, unseen_cols = torch.nonzero(seen).flatten(), torch.nonzero(~seen).flatten()
    if not len(seen_cols) or not len(unseen_cols):
        return dist.min(dim=1).indices
    d_seen, p_seen = _nearest(dist, seen_cols)
    d_unseen, p_unseen = _nearest(dist, unseen_cols)
    shifted = d_seen + torch.tensor(beta, dtype=torch.float32)
    take_seen = (shifted < d_unseen) | ((shifted == d_unseen) & (p_seen < p_unseen))
    return torch.where(take_seen, p_seen, p_unseen)


def _nearest(dist: torch.Tensor, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest of `columns` per row and its distance, as evaluation finds it (torch.min)."""
    values, pos = dist[:, columns].min(dim=1)
    return values, columns[pos]


def sorted_columns(values: torch.Tensor, k: int) -> torch.Tensor:
    """The columns of the `k` smallest values of each row, ascending, ties to the lower column:
    what a stable sort gives, at about half its time. Each value becomes an int64 key that
    sorts as the float does (its bits, negatives flipped; -0.0 made 0.0) with the column in its
    low 32 bits, so keys are distinct and numpy's fast unstable sort and partition are exact."""
    c = values.shape[1]
    bits = (values.detach().cpu().numpy().astype(np.float32) + np.float32(0)).view(np.int32)
    keys = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64) << 32
    keys |= np.arange(c, dtype=np.int64)
    if k < c:
        keys = np.partition(keys, k - 1, axis=1)[:, :k]
    keys.sort(axis=1)
    return torch.from_numpy(keys & 0xFFFFFFFF).to(values.device)
