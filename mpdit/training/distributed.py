"""One process or torchrun: the process group, FSDP2 sharding, and whole state dicts."""
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


# FSDP2: parameters are sharded DTensors; checkpoints hold full (unsharded) state dicts.
def shard(model: torch.nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)


def _full(fn, *args, **kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return fn(*args, options=StateDictOptions(full_state_dict=True, cpu_offload=True), **kwargs)


def full_state(model, ema, optimizer, sharded: bool) -> tuple:
    """(model, ema, optimizer) state dicts, whole; with FSDP a collective, complete on rank 0."""
    if not sharded:
        return model.state_dict(), ema.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return (_full(get_model_state_dict, model), _full(get_model_state_dict, ema),
            _full(get_optimizer_state_dict, model, optimizer))


def load_full_state(state, model, ema, optimizer, sharded: bool) -> None:
    if not sharded:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    _full(set_model_state_dict, model, state["model"])
    _full(set_model_state_dict, ema, state["ema"])
    _full(set_optimizer_state_dict, model, optimizer, optim_state_dict=state["optimizer"])
