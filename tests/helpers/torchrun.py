"""Launching torchrun the way several machines would, on this one: agents with a c10d rendezvous
on 127.0.0.1 at a port the operating system gives (docs/multi-node.md)."""
import contextlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import torch

from helpers.runs import TRAIN_ARGS

# The tests' tiny run; --lr 1e-3 so that another data order or other draws move the weights by
# about lr per step, far above the reduction-order differences (about 1e-7).
TRAIN = ["-m", "mpdit", *TRAIN_ARGS, "--lr", "1e-3", "--checkpoint-every", "2", "--keep-checkpoints", "0"]
TIMEOUT = 300  # seconds for one launch, all its agents and restarts
FAULTY_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faulty_worker.py")


@dataclass
class Launch:
    returncode: int  # the first non-zero code of the agents, or 0
    output: str  # every agent's stderr, one after the other


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun_command(args: list, *, nodes: int = 1, per_node: int = 1, max_restarts: int = 0) -> list:
    """One agent's command: rendezvous c10d at 127.0.0.1 on a port free now; `args` is what the
    workers run (["-m", "mpdit", ...] or [script.py, ...])."""
    port = free_port()
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={per_node}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=test-{port}",
            f"--max-restarts={max_restarts}", *(str(arg) for arg in args)]


def worker_env(env: dict = None) -> dict:
    """One thread per worker, as torchrun sets for several workers per node, so that runs of any
    shape compute alike."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}


@contextlib.contextmanager
def one_thread():
    """This process computes on one thread, as each torchrun worker (worker_env), for the duration."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def torchrun(args: list, *, nodes: int = 1, per_node: int = 1, max_restarts: int = 0, env: dict = None) -> Launch:
    """`nodes` torchrun agents of `per_node` workers each, as on `nodes` machines: the same command
    everywhere; each launch bounded by TIMEOUT."""
    command = torchrun_command(args, nodes=nodes, per_node=per_node, max_restarts=max_restarts)
    agents = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=worker_env(env)) for _ in range(nodes)]
    outputs, codes = [], []
    try:
        for agent in agents:
            outputs.append(agent.communicate(timeout=TIMEOUT)[1])
            codes.append(agent.returncode)
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    return Launch(next((code for code in codes if code), 0), "\n".join(outputs))
