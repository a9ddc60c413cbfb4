"""The test protocol (SPEC.md "Evaluation"): beta* from the stage-1 model on validation,
applied once to the stage-2 model on the test split."""

from __future__ import annotations

from typing import Any

import torch

from clipclap_cli.data.protocol_data import EvalSet, ProtocolData
from clipclap_cli.evaluate.metrics import GridResult, beta_star, bias_grid, evaluate_distances
from clipclap_cli.metric_table import figures_of
from clipclap_cli.plugins.contracts import check_distances, head_code
from clipclap_cli.plugins.fusion_head import MODES, FusionHead
from clipclap_cli.protocol import DEFAULT_BETA_GRID, FILE_UNITS


def evaluate_models(data: ProtocolData, stage1_head, stage2_head,
                    grid: tuple[float, float, int] = DEFAULT_BETA_GRID) -> dict[str, Any]:
    """S, U, HM, ZSL on test at beta*, per-class accuracy, and the S/U/HM curves over the grid."""
    betas = bias_grid(*grid)
    val = data.sets.val  # the read made the subsets: nothing here reads or computes them again
    val_results = evaluate_head(stage1_head, data, val, betas=betas)
    val_betas = {m: r.best.beta for m, r in val_results.items()}
    beta = beta_star(val_betas)
    test = data.sets.test
    fixed = evaluate_head(stage2_head, data, test, fixed_beta=beta)["both"].best
    curve = evaluate_head(stage2_head, data, test, betas=betas)["both"]
    names = data.class_names
    seen, unseen = test.seen.tolist(), test.unseen.tolist()
    return {
        "dataset": data.dataset,
        "split": data.split,
        "beta_star": beta,
        "val": {"betas": val_betas, **{k: v for k, v in val_results["both"].best.as_dict().items()
                                       if not k.startswith("per_class")},
                "curve": val_results["both"].as_dict()["curve"]},
        "test": {**figures_of(fixed), "beta": beta},  # every metric of metric_table.METRIC_TABLE
        # what each mean runs over: S over the seen test classes, U and ZSL over the unseen ones
        "classes": {"seen": len(seen), "unseen": len(unseen)},
        "per_class_accuracy": {
            "seen": {names[c]: fixed.per_class_accuracy[c] for c in seen},
            "unseen": {names[c]: fixed.per_class_accuracy[c] for c in unseen},
        },
        "zsl_per_class_recall": {names[c]: fixed.per_class_recall[c] for c in unseen},
        "test_curve": curve.as_dict()["curve"],
        "grid": {"start": float(grid[0]), "stop": float(grid[1]), "steps": int(grid[2])},
        "units": FILE_UNITS,
    }


def evaluate_head(head: FusionHead, data: ProtocolData, split: EvalSet, fixed_beta: float | None = None,
                  modes: tuple[str, ...] = MODES, betas: torch.Tensor | None = None) -> dict[str, GridResult]:
    """Evaluate a head (eval mode) on a split, per distance mode it offers."""
    was_training = head.training
    head.eval()
    with torch.no_grad():
        v = split.videos
        with head_code(head, "distances"):
            dists = check_distances(head, head.distances(data.audio[v], data.video[v],
                                                         data.class_text[split.classes]), len(v), len(split.classes))
    head.train(was_training)
    targets = data.labels[v].cpu()
    return {m: evaluate_distances(d.cpu(), targets, split.seen.cpu(), split.unseen.cpu(), betas=betas,
                                  fixed_beta=fixed_beta, num_classes=data.num_classes)
            for m, d in dists.items() if m in modes}


