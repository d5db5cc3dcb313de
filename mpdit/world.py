"""One process or torchrun: the process group and the values ranks exchange. Used by every
command that can run under torchrun (train, sample, extract-latents), through joined_world()."""
import contextlib
import gc
import os
import sys
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
    """torchrun's environment -> process group (nccl on GPU, gloo on CPU); else one process.
    The GPU is the node-local LOCAL_RANK: the global RANK says nothing about the node (and may
    change when torchrun restarts the workers)."""
    cuda = torch.cuda.is_available()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=torch.device("cuda") if cuda else torch.device("cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    world = World(dist.get_rank(), size, local_rank, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))
    advice = restart_advice(os.environ)
    if advice and world.main:
        print(f"mpdit: warning: {advice}", file=sys.stderr)
    return world


def restart_advice(env) -> str:
    """A warning for torchrun restarts that can fail, or '': with --max-restarts, workers that
    share the agent's rendezvous store can read the previous round's addresses and fail to connect
    (PyTorch issue 135712; seen here with gloo)."""
    if int(env.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 and env.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return ("a restart by torchrun --max-restarts can fail to connect while the workers share the rendezvous "
                "store; export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 on every node (docs/multi-node.md)")
    return ""


@contextlib.contextmanager
def joined_world():
    """init_world() for the duration, then the process group's orderly end (close_world): after
    an error without the barrier, since a peer may never reach it."""
    world = init_world()
    try:
        yield world
    except BaseException:
        close_world(world, meet=False)
        raise
    close_world(world)


def close_world(world: World, meet: bool = True) -> None:
    """The end of a torchrun process group, in an order that lets its threads finish while the
    interpreter is whole: the ranks meet (`meet`: no rank closes its connections while a peer still
    sends on them), the garbage that still holds the group is collected (FSDP's sharded modules are
    reference cycles: without this they keep the group, its gloo worker threads and their work
    alive past destroy_process_group, to be torn down mid-exit), then the group is destroyed."""
    if world.size == 1 or not dist.is_initialized():
        return
    if meet and world.device.type == "cuda":
        dist.barrier(device_ids=[world.local_rank])
    elif meet:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def broadcast(world: World, value):
    """Rank 0's `value` on every rank."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
