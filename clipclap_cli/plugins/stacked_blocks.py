"""Building blocks of stacked heads: K runs of one architecture as one model (imports torch).

A run's `Block` is Linear -> BatchNorm1d -> ReLU -> Dropout; its stacked form applies the K
runs' layers to (batch, K, width) activations at once: one batched matrix multiply (`bmm`), one
batch norm over K x width channels (each run normalised by its own statistics), one ReLU, and
dropout with each run's mask drawn from that run's generator as `Dropout` draws it alone. The
parameters are (K, ...) leaves (`StackedParameters`) whose rows the runs' optimisers step.
How a training epoch uses them: clipclap_cli/train/stacking.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn


class StackedParameters:
    """The parameters of K heads as stacked leaves (`leaves[name]` is (K, *shape)); each head's
    own parameter objects, which its optimiser holds, are swapped for views of row k of the
    leaf while the stack lives, and get their values back on `release`."""

    def __init__(self, heads: Sequence[nn.Module]):
        self.heads = list(heads)
        self.own = [dict(h.named_parameters()) for h in self.heads]
        self.leaves = {name: torch.stack([own[name].detach() for own in self.own]).requires_grad_()
                       for name in self.own[0]}
        # the optimiser's parameter objects now alias rows of the leaves: its steps update them
        for k, own in enumerate(self.own):
            for name, p in own.items():
                p.data = self.leaves[name].detach()[k]

    def share_gradients(self) -> None:
        """After backward: each run's parameters see their rows of the stacked gradients."""
        for k, own in enumerate(self.own):
            for name, p in own.items():
                grad = self.leaves[name].grad
                p.grad = None if grad is None else grad[k]

    def zero_grad(self) -> None:
        for leaf in self.leaves.values():
            leaf.grad = None
        for own in self.own:
            for p in own.values():
                p.grad = None

    def release(self) -> None:
        """Give every head its own storage again (a copy of its row)."""
        for k, own in enumerate(self.own):
            for name, p in own.items():
                p.data = self.leaves[name].detach()[k].clone()
                p.grad = None


class StackedBlock:
    """A `Block` (Linear -> BatchNorm1d -> ReLU -> Dropout, repeated) of K heads, applied to
    (batch, K, width) activations with the same interface as `Block` (`forward`, `linear`,
    `after_linear`). Running statistics are stacked copies, written back by `write_back`."""

    def __init__(self, prefix: str, blocks: Sequence[nn.Module], params: StackedParameters,
                 generators: Sequence[torch.Generator]):
        self.blocks, self.generators = list(blocks), list(generators)
        self.layers: list[tuple] = []
        for i, layer in enumerate(self.blocks[0].fc):
            name = f"{prefix}.fc.{i}"
            if isinstance(layer, nn.Linear):
                self.layers.append(("linear", params.leaves[f"{name}.weight"], params.leaves[f"{name}.bias"]))
            elif isinstance(layer, nn.BatchNorm1d):
                norms = [b.fc[i] for b in self.blocks]
                stats = (torch.stack([n.running_mean for n in norms]), torch.stack([n.running_var for n in norms]))
                if layer.momentum is None:  # a cumulative average would need each run's count
                    raise TypeError("a stacked block needs batch norm with a momentum")
                self.layers.append(("norm", params.leaves[f"{name}.weight"], params.leaves[f"{name}.bias"],
                                    stats, layer.momentum, layer.eps, norms, [0]))
            elif isinstance(layer, nn.ReLU):
                self.layers.append(("relu",))
            elif isinstance(layer, nn.Dropout):
                self.layers.append(("dropout", layer.p))
            else:
                raise TypeError(f"a stacked block cannot hold {type(layer).__name__}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_linear(self.linear(x))

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(self.layers[0], x)

    def after_linear(self, h: torch.Tensor) -> torch.Tensor:
        for layer in islice(self.layers, 1, None):
            h = self._apply(layer, h)
        return h

    def _apply(self, layer: tuple, x: torch.Tensor) -> torch.Tensor:
        kind = layer[0]
        if kind == "linear":
            return stacked_linear(x, layer[1], layer[2])
        if kind == "norm":
            _, weight, bias, (mean, var), momentum, eps, _, calls = layer
            calls[0] += 1
            return stacked_batch_norm(x, weight, bias, mean, var, momentum, eps)
        if kind == "relu":
            return torch.relu(x)
        return stacked_dropout(x, layer[1], self.generators)

    def write_back(self) -> None:
        """Each head's batch-norm running statistics and counts, as its own layers would hold them."""
        for layer in self.layers:
            if layer[0] == "norm":
                _, _, _, (mean, var), _, _, norms, calls = layer
                for k, norm in enumerate(norms):
                    norm.running_mean.copy_(mean[k])
                    norm.running_var.copy_(var[k])
                    norm.num_batches_tracked.add_(calls[0])
                calls[0] = 0


class _StackedLinear(torch.autograd.Function):
    """(batch, K, in) -> (batch, K, out), run k's rows times run k's weight. The products run on
    contiguous (K, batch, ...) copies (a batched multiply of strided operands takes a slow path
    on the CPU, ten times slower), and the weight gradient comes out as (out, in) matrices,
    where autograd's would compute their transposes and copy them into the weight's layout."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        per_run = x.transpose(0, 1).contiguous()  # (K, batch, in)
        ctx.save_for_backward(per_run, weight)
        return torch.baddbmm(bias.unsqueeze(1), per_run, weight.transpose(1, 2)).transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, grad):
        per_run, weight = ctx.saved_tensors
        grad_out = grad.transpose(0, 1).contiguous()  # (K, batch, out)
        grad_x = torch.bmm(grad_out, weight).transpose(0, 1) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad_out.transpose(1, 2), per_run)
        return grad_x, grad_weight, grad_out.sum(dim=1)


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(batch, K, in) -> (batch, K, out): run k's rows times run k's weight (K, out, in), plus its bias."""
    return _StackedLinear.apply(x, weight, bias)


def stacked_batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                       running_var: torch.Tensor, momentum: float, eps: float) -> torch.Tensor:
    """Training-mode batch norm of each run's rows by their own statistics: (batch, K, width) is
    (batch, K*width) channels to `F.batch_norm`, which moves each run's running statistics."""
    b, k, d = x.shape
    out = F.batch_norm(x.reshape(b, k * d), running_mean.view(-1), running_var.view(-1), weight.reshape(-1),
                       bias.reshape(-1), training=True, momentum=momentum, eps=eps)
    return out.view(b, k, d)


def stacked_dropout(x: torch.Tensor, p: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Dropout with run k's mask drawn from `generators[k]` exactly as `Dropout` draws a run's
    mask alone (a uniform per element, kept below 1 - p, scaled by 1 / (1 - p))."""
    if p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    b, _, d = x.shape
    keep = torch.stack([torch.rand((b, d), generator=g, dtype=x.dtype, device=x.device) for g in generators], dim=1)
    return x * keep.add_(1.0 - p).floor_().mul_(1.0 / (1.0 - p))


def per_run_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`F.mse_loss` of each run's rows: (batch, K, width) -> (K,). Summed over the width, then
    over each run's contiguous row of batch sums, so that a run's value has the same rounding
    whatever K is (runs leave a stack as their stages end, and a resumed stack may hold fewer)."""
    batch, _, width = a.shape
    return (a - b).square().sum(dim=2).T.contiguous().sum(dim=1) / (batch * width)


