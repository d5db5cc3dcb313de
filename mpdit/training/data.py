"""The order of a training run's samples: ResumableSampler, whose position (DataPosition) is
saved in checkpoints, so that a resumed run continues the same order on any number of processes.

The datasets themselves live in mpdit.data (re-exported here under their older import path).
"""
from typing import NamedTuple

import torch
from torch.utils.data import Sampler

from mpdit.data.datasets import (  # noqa: F401 (their older import path)
    DigitsDataset,
    LatentShards,
    data_shape,
    latents_info,
    open_dataset,
)


class DataPosition(NamedTuple):
    """Where a run is in its data order, in global samples: the epoch, and the offset of the next
    step's first sample in that epoch's permutation. Independent of the number of processes."""

    epoch: int = 0
    offset: int = 0

    def advance(self, steps: int, global_batch: int, size: int) -> "DataPosition":
        """The position `steps` optimizer steps of `global_batch` samples later: an epoch ends when
        fewer than a global batch of its permutation is left (those samples are not used)."""
        per_epoch = size // global_batch
        left = (size - self.offset) // global_batch  # steps still in this epoch
        if steps < left:
            return DataPosition(self.epoch, self.offset + steps * global_batch)
        epochs, step_in_epoch = divmod(steps - left, per_epoch)
        return DataPosition(self.epoch + 1 + epochs, step_in_epoch * global_batch)


def micro_batch_start(index: int, rank: int, world: int, micro: int) -> int:
    """Where micro-batch `index` of process `rank` begins in its step's global batch: a step's
    micro-batches interleave over the processes, so a step takes the same samples on any world."""
    return (index * world + rank) * micro


class ResumableSampler(Sampler):
    """This rank's indices, step after step, from `start`. Each epoch is a permutation seeded by
    (seed, epoch); optimizer step k of an epoch takes its positions [kG, (k + 1)G) for the global
    batch G, whatever the number of processes: rank r's micro-batch i of the step is the slice at
    micro_batch_start(i, r, world, micro). So a run resumed on another number of processes (and
    micro-batch) sees the same global batches in the same order; only which process draws which
    sample changes."""

    def __init__(self, size: int, global_batch: int, micro: int, rank: int = 0, world: int = 1, seed: int = 0,
                 start: DataPosition = DataPosition()):
        if size < global_batch:
            raise ValueError(f"the dataset's {size} items are fewer than one global batch of {global_batch}")
        if global_batch % (micro * world):
            raise ValueError(f"global batch {global_batch}: expected a multiple of {world} processes x micro-batch "
                             f"{micro}")
        self.size, self.global_batch, self.micro, self.rank, self.world = size, global_batch, micro, rank, world
        self.seed, self.start = seed, start

    def __iter__(self):
        epoch, offset = self.start
        micro_batches = self.global_batch // (self.micro * self.world)  # per process and step
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            while offset + self.global_batch <= self.size:
                for index in range(micro_batches):
                    first = offset + micro_batch_start(index, self.rank, self.world, self.micro)
                    yield from order[first:first + self.micro].tolist()
                offset += self.global_batch
            epoch, offset = epoch + 1, 0

    def __len__(self):  # an endless stream; DataLoader only needs a number for its bookkeeping
        return self.size // self.global_batch * self.global_batch // self.world
