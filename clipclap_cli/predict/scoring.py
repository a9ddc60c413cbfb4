"""Scoring samples against classes: a trained head's distances, calibrated as evaluation does
(β added to the distances of the classes the model trained on), ranked best first.

The first class of every row is evaluation's decision (evaluate/metrics.py) sample for sample:
the nearest seen class at its own distance plus β, in float32, against the nearest unseen
class, a tie going to the lower class index. The rest of the row is every other class by its
calibrated distance, ties again to the lower index (a stable sort), all at once, no loop over
samples.
"""

from __future__ import annotations

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
    n, c = dist.shape
    k = max(1, min(int(top_k), c))
    seen = seen_mask.to(torch.bool).to(dist.device)
    shifted = torch.where(seen[None, :], dist + torch.tensor(beta, dtype=torch.float32), dist)
    order = torch.sort(shifted, dim=1, stable=True).indices[:, :k]
    decision = _decision(dist, seen, beta)
    # the decision first, then the sorted order without it (it is nearly always order[:, 0]
    # already; float32 rounding of distance + β can make it differ only between equal scores)
    where = (order == decision[:, None]).to(torch.int8).argmax(dim=1)
    where = torch.where((order == decision[:, None]).any(dim=1), where, torch.full_like(where, k - 1))
    cols = torch.arange(k, device=dist.device)[None, :].expand(n, k)
    source = torch.where(cols <= where[:, None], cols - 1, cols).clamp(min=0)
    order = torch.gather(order, 1, source)
    order[:, 0] = decision
    return -torch.gather(shifted, 1, order), order


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
