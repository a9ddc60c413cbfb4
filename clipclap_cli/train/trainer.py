"""One trainer for every fusion head (SPEC.md "Training"); no Typer or rich here.

Per step, in the reference's order: the head's loss on a class-balanced batch (its batch
forward, then the class branch), backward, the Adam step, then the reference's extra train-mode
forward (`replay_forward`, on by default). After each epoch the whole validation split is
evaluated over the bias grid; its HM selects the best epoch and steps ReduceLROnPlateau.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from clipclap_cli.data.protocol_data import EvalSet, ProtocolData, TrainSet
from clipclap_cli.errors import RunError
from clipclap_cli.evaluate.evaluation import evaluate_head
from clipclap_cli.evaluate.metrics import bias_grid
from clipclap_cli.plugins.contracts import check_loss, head_code
from clipclap_cli.plugins.fusion_head import Batch, FusionHead
from clipclap_cli.protocol import TrainSettings


@dataclass
class EpochRecord:
    """What one epoch produced (one line of metrics.jsonl). Epochs count from 1, as on the console."""

    epoch: int
    lr: float
    losses: dict[str, float]
    val: dict[str, Any]
    val_betas: dict[str, float]
    best_epoch: int
    best_hm: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainerState:
    """Everything needed to resume after an epoch: model, optimiser, scheduler, RNG, best.
    Epochs count from 1: `epochs_done` is the number of the last completed epoch, and
    `best_epoch` 0 means none yet."""

    epochs_done: int = 0
    best_epoch: int = 0
    best_hm: float | None = None
    best_betas: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def improves(best_hm: float | None, hm: float) -> bool:
    """The reference's check_best_score: strictly greater (the earliest epoch wins ties), and a
    best HM of 0 counts as unset (so an epoch with HM 0 after one with HM 0 becomes the best)."""
    return best_hm is None or best_hm == 0 or hm > best_hm


class ClassBalancedSampler:
    """Batches drawn with replacement: each class equally likely, uniform within the class."""

    def __init__(self, labels: torch.Tensor, classes: torch.Tensor, generator: torch.Generator):
        self.generator = generator
        positions = torch.searchsorted(classes, labels)
        order = torch.argsort(positions, stable=True)
        self.order, self.targets_sorted = order, positions[order]
        self.counts = torch.bincount(positions, minlength=len(classes))
        if (self.counts == 0).any():
            missing = classes[self.counts == 0].tolist()
            raise ValueError(f"training classes without videos: {missing}")
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.num_classes = len(classes)

    def draw(self, n: int, exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` (row into labels, class position) pairs; with `exclude`, a class other than it."""
        if exclude is None:
            cls = torch.randint(self.num_classes, (n,), generator=self.generator)
        else:
            cls = (exclude + torch.randint(1, self.num_classes, (n,), generator=self.generator)) % self.num_classes
        u = torch.rand(n, generator=self.generator, dtype=torch.float64)
        within = (u * self.counts[cls]).long()
        return self.order[self.starts[cls] + within], cls


@dataclass
class EpochDraw:
    """An epoch's batches, drawn up front from the run's sampler: `steps` batches of
    `batch_size` (row into the training videos, class position) pairs, and the negatives."""

    rows: torch.Tensor
    targets: torch.Tensor
    negatives: tuple[torch.Tensor, torch.Tensor] | None
    steps: int
    batch_size: int

    def step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        sl = slice(step * self.batch_size, (step + 1) * self.batch_size)
        neg = None if self.negatives is None else (self.negatives[0][sl], self.negatives[1][sl])
        return self.rows[sl], self.targets[sl], neg


class Trainer:
    """Trains one head on one stage; `run_epoch` is resumable through `state_dict`.

    Dropout masks come from torch's global generator when the run trains alone; in a stack
    (`stacked_epoch`) each run draws them from its own `dropout_generator`, which starts from the
    state the global one would have had: the same masks in the same order."""

    def __init__(self, head: FusionHead, data: ProtocolData, train: TrainSet, val: EvalSet, config: TrainSettings,
                 dropout_generator: torch.Generator | None = None):
        self.head, self.data, self.train_set, self.val, self.config = head, data, train, val, config
        self.dropout_generator = dropout_generator
        # a training-free head (zeroshot) has nothing to optimise: no optimiser, no schedule
        self.optimizer = self.scheduler = None
        if not head.training_free:
            # fused Adam: the same update as the reference's, ~10x faster than the per-tensor loop on CPU
            self.optimizer = torch.optim.Adam(head.param_groups(), lr=config.lr, weight_decay=config.weight_decay,
                                              fused=True)
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="max", factor=0.1,
                                                                        patience=3)
        self.generator = torch.Generator().manual_seed(config.seed)
        labels = data.labels[train.videos].cpu()
        self.sampler = ClassBalancedSampler(labels, train.classes.cpu(), self.generator)
        self.train_text = data.class_text[train.classes]
        self.state = TrainerState()

    def draw_epoch(self) -> EpochDraw:
        """The next epoch's batches (none for a training-free head), in the order a run draws them."""
        cfg = self.config
        steps = 0 if self.head.training_free else cfg.batches_per_epoch
        n = cfg.batch_size * steps
        rows, targets = self.sampler.draw(n)
        neg = self.sampler.draw(n, exclude=targets) if self.head.needs_negatives else None
        return EpochDraw(rows, targets, neg, steps, cfg.batch_size)

    def _batch(self, rows: torch.Tensor, targets: torch.Tensor, neg: tuple | None) -> Batch:
        """A batch from (row, class position) pairs: 1-D for a run alone, (batch, K) for a stack,
        whose tensors then come out (batch, K, ...)."""
        d, dev = self.data, self.data.audio.device
        vids = self.train_set.videos[rows.to(dev)]
        targets = targets.to(dev)
        batch = Batch(d.audio[vids], d.video[vids], self.train_text[targets], targets)
        if neg is not None:
            nrows, ntargets = neg
            nvids = self.train_set.videos[nrows.to(dev)]
            ntargets = ntargets.to(dev)
            batch.audio_neg, batch.video_neg = d.audio[nvids], d.video[nvids]
            batch.text_neg, batch.target_neg = self.train_text[ntargets], ntargets
        return batch

    def run_epoch(self, on_step: Callable[[int], None] | None = None) -> EpochRecord:
        cfg, head = self.config, self.head
        draw = self.draw_epoch()
        head.train()
        sums: dict[str, torch.Tensor] = {}
        # which steps' loss was not finite: kept on the device and read once, after the epoch
        non_finite = torch.zeros(draw.steps, dtype=torch.bool, device=self.data.audio.device)
        for step in range(draw.steps):
            batch = self._batch(*draw.step(step))
            with head_code(head, "loss"):
                loss, parts = check_loss(head, head.loss(batch, self.train_text))
            non_finite[step] = ~torch.isfinite(loss.detach())
            self.optimizer.zero_grad(set_to_none=True)
            with head_code(head, "the loss's backward"):
                loss.backward()
            self.optimizer.step()
            if cfg.replay_forward:
                with head_code(head, "replay_forward"):
                    head.replay_forward(batch)
            for k, v in {"total": loss, **parts}.items():
                sums[k] = sums.get(k, 0) + v.detach()
            if on_step is not None:
                on_step(step + 1)
        return self.end_epoch(draw.steps, sums, non_finite)

    def end_epoch(self, steps: int, sums: dict[str, torch.Tensor], non_finite: torch.Tensor) -> EpochRecord:
        """After an epoch's steps: refuse a non-finite loss, validate over the bias grid, keep the
        best epoch, step the schedule, and record the epoch."""
        cfg = self.config
        epoch = self.state.epochs_done + 1
        if bool(non_finite.any()):  # nothing of this epoch is recorded or saved: the last good checkpoint stays
            step = int(non_finite.nonzero()[0])
            raise RunError(f"the training loss turned non-finite at epoch {epoch}, batch {step + 1} of "
                           f"{cfg.batches_per_epoch}; the run stopped and keeps its last good checkpoint, and no "
                           "results were written (check the data with `clipclap verify`, or lower --lr)")
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else 0.0
        results = evaluate_head(self.head, self.data, self.val, betas=bias_grid(*cfg.beta_grid))
        both = results["both"].best
        betas = {m: r.best.beta for m, r in results.items()}
        if improves(self.state.best_hm, both.hm):
            self.state.best_hm, self.state.best_epoch, self.state.best_betas = both.hm, epoch, betas
        if cfg.lr_scheduler and self.scheduler is not None:
            self.scheduler.step(both.hm)
        record = EpochRecord(
            epoch=epoch, lr=lr,
            losses={k: float(v) / steps for k, v in sums.items()},
            val={k: v for k, v in both.as_dict().items() if not k.startswith("per_class")},
            val_betas=betas, best_epoch=self.state.best_epoch, best_hm=float(self.state.best_hm),
        )
        self.state.epochs_done = epoch
        self.state.history.append(record.as_dict())
        return record
