"""One process or torchrun: the process group and the values ranks exchange. Used by every
command that can run under torchrun (train, sample, extract-latents)."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    """torchrun's environment -> process group (nccl on GPU, gloo on CPU); else one process."""
    cuda = torch.cuda.is_available()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=torch.device("cuda") if cuda else torch.device("cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return World(dist.get_rank(), size, local_rank, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def gather(world: World, value) -> list:
    """`value` from every rank, in rank order."""
    if world.size == 1:
        return [value]
    values = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def broadcast(world: World, value):
    """Rank 0's `value` on every rank."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
