"""Launching torchrun the way several machines would, on this one: agents with a c10d rendezvous
on 127.0.0.1 (docs/multi-node.md). Used by tests/test_multinode.py."""
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

# The tiny model and run of these tests; --lr 1e-3 so that another data order or other draws move
# the weights by about lr per step, far above the reduction-order differences (about 1e-7).
TRAIN = ["-m", "mpdit", "train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", "digits",
         "--global-batch-size", "8", "--lr", "1e-3", "--checkpoint-every", "2", "--keep-checkpoints", "0",
         "--log-every", "1", "--sample-every", "0", "--num-workers", "0"]
TIMEOUT = 300  # seconds for one launch, all its agents and restarts


@dataclass
class Launch:
    returncode: int  # the first non-zero code of the agents, or 0
    output: str  # every agent's stderr, one after the other


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(args: list, *, nodes: int = 1, per_node: int = 1, max_restarts: int = 0, env: dict = None,
             script: str = None) -> Launch:
    """`nodes` torchrun agents of `per_node` workers each, as on `nodes` machines: the same command
    everywhere, rendezvous c10d at 127.0.0.1 on a free port. `script`: a Python file the workers run
    instead of `python -m mpdit` (args then follow it). One thread per worker, as torchrun sets for
    several workers per node, so that runs of any shape compute alike."""
    port = free_port()
    command = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={per_node}",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=test-{port}",
               f"--max-restarts={max_restarts}"]
    command += [script, *args[2:]] if script else args
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    agents = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=environment) for _ in range(nodes)]
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
