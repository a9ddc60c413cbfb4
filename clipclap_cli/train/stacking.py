"""K runs of one architecture trained as one stacked model (`clipclap train --seeds K`).

A batch of 64 leaves a matrix multiply too small to keep a machine busy: a ClipClap step is
mostly operator overhead. Stacked, the K runs of a command share each operator: one batched
matrix multiply (`bmm`) instead of K small ones, one batch norm over K x width channels, one
ReLU. Everything that makes a run a run stays its own:

* its parameters: the K heads' tensors are copied into one leaf per parameter name, shaped
  (K, ...), and each run's optimiser steps views of that leaf (`StackedParameters`): the update
  is the run's own Adam, learning rate and schedule, with no copy per step;
* its data order: each run draws its batches from its own sampler, as alone;
* its dropout masks: drawn from the run's own generator, in the order and shapes the run draws
  them alone from torch's global generator (whose state that generator carries: `Trainer`);
* its batch-norm statistics: per run, since batch norm normalises each of the K x width channels.

So a run trained in a stack and the same run trained alone see the same batches and masks; their
numbers differ only by the rounding of batched against single matrix multiplies.

Activations are laid out (batch, run, width): batch norm then reads (batch, K*width), and a
dropout mask is the K runs' masks side by side. A head opts in with `FusionHead.stacked`
(ClipClap does; see docs/train.md "Stacked runs").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from clipclap_cli.plugins.stacked_blocks import StackedParameters


def stack_heads(heads: Sequence[torch.nn.Module], params: StackedParameters, generators: Sequence[torch.Generator]):
    """The stacked form of `heads` (one class, one set of parameters, one run each), or None
    where the head class has none (`FusionHead.stacked`)."""
    return type(heads[0]).stacked(heads, params, generators)


def stacked_epoch(trainers: Sequence, on_step: Callable[[int], None] | None = None) -> list:
    """One epoch of each run of `trainers` (runs of one head class and parameters, on one data
    and stage, each with its `dropout_generator`), trained as one stacked model: each run's
    batches from its own sampler, one forward and backward for all, each run's own optimiser
    step, then each run's own validation and record (`Trainer.end_epoch`). Returns per run its
    `EpochRecord`, or the `RunError` that ended it (a loss that turned non-finite), which leaves
    the other runs' epochs as they are."""
    from clipclap_cli.errors import RunError
    from clipclap_cli.plugins.contracts import check_stacked_loss, head_code

    first = trainers[0]
    heads = [t.head for t in trainers]
    draws = [t.draw_epoch() for t in trainers]
    steps, k = draws[0].steps, len(trainers)
    for head in heads:
        head.train()
    params = StackedParameters(heads)
    try:
        with head_code(first.head, "stacked()"):
            stacked = stack_heads(heads, params, [t.dropout_generator for t in trainers])
    except BaseException:
        params.release()
        raise
    sums: dict[str, torch.Tensor] = {}
    non_finite = torch.zeros(k, steps, dtype=torch.bool, device=first.data.audio.device)
    try:
        for step in range(steps):
            parts_of_runs = [d.step(step) for d in draws]
            rows = torch.stack([p[0] for p in parts_of_runs], dim=1)
            targets = torch.stack([p[1] for p in parts_of_runs], dim=1)
            neg = None
            if parts_of_runs[0][2] is not None:
                neg = tuple(torch.stack([p[2][i] for p in parts_of_runs], dim=1) for i in (0, 1))
            batch = first._batch(rows, targets, neg)
            with head_code(first.head, "the stacked loss"):
                total, parts = check_stacked_loss(first.head, stacked.loss(batch, first.train_text), k)
            non_finite[:, step] = ~torch.isfinite(total.detach())
            params.zero_grad()
            with head_code(first.head, "the stacked loss's backward"):
                total.sum().backward()
            params.share_gradients()
            for trainer in trainers:
                trainer.optimizer.step()
            if first.config.replay_forward:
                with head_code(first.head, "the stacked replay_forward"):
                    stacked.replay_forward(batch, first.train_text)
            for name, value in {"total": total, **parts}.items():
                sums[name] = sums.get(name, 0) + value.detach()
            if on_step is not None:
                on_step(step + 1)
    finally:  # also when interrupted: the heads keep what the last completed step left
        params.release()
        with head_code(first.head, "the stacked write_back"):
            stacked.write_back()
    records = []
    for i, trainer in enumerate(trainers):
        try:
            records.append(trainer.end_epoch(steps, {n: v[i] for n, v in sums.items()}, non_finite[i]))
        except RunError as e:
            records.append(e)
    return records
