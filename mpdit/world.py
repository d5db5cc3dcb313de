"""One process or torchrun: the process group and the values ranks exchange. Used by every
command that can run under torchrun (train, sample, extract-latents)."""
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


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(world: World, value):
    """Rank 0's `value` on every rank."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
