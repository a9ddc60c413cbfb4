"""The runs of one `train` command spread over the ranks of `torchrun` (one node or many).

torchrun starts the same command once per rank and says which rank each is (RANK, WORLD_SIZE,
LOCAL_RANK in the environment). Every rank plans the same runs (the plan is deterministic),
trains its own share of them (every WORLD_SIZE-th, from its RANK) into the shared run folders,
and at the end the ranks gather, through torch.distributed (gloo: CPU collectives, whatever
device the runs train on), which runs finished and which failed, so that rank 0 prints one table
of them all. A rank that dies leaves its runs resumable like any stopped run: the same torchrun
command (or a plain `train`) resumes them. torch.distributed is the engine; nothing here
schedules.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among torchrun's: its rank, their number, its rank on this node."""

    rank: int
    world: int
    local_rank: int

    def share(self, plan: list[T]) -> list[T]:
        """This rank's runs: every `world`-th from `rank`, so shares are disjoint and cover the plan."""
        return plan[self.rank::self.world]

    def device(self, device: str) -> str:
        """`cuda` means this rank's GPU on its node (`cuda:LOCAL_RANK`); any other device is kept."""
        return f"cuda:{self.local_rank}" if device == "cuda" else device


def torchrun_ranks() -> Ranks | None:
    """The ranks torchrun set in the environment, or None when there is one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """torch.distributed's default group over torchrun's ranks, for the final gathering (gloo)."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather(value: T) -> list[T]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    import torch.distributed as dist

    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    """Wait until every rank is here."""
    import torch.distributed as dist

    dist.barrier()
