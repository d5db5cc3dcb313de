"""`python -m mpdit` with a crash: in torchrun's first round, the worker of rank FAIL_RANK exits
with code 1 right after optimizer step FAIL_AFTER, as a worker lost to a hardware fault would.
A test of torchrun's restarts (tests/training/test_multinode.py)."""
import os
import sys

from mpdit.cli import main
from mpdit.training.step import TrainStep

step_once = TrainStep.__call__


def step_then_crash(self, micro_batches, step):
    result = step_once(self, micro_batches, step)
    first_round = os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0"
    if first_round and self.world.rank == int(os.environ["FAIL_RANK"]) and step + 1 == int(os.environ["FAIL_AFTER"]):
        print(f"faulty_worker: rank {self.world.rank} exits after step {step + 1}", file=sys.stderr, flush=True)
        os._exit(1)
    return result


TrainStep.__call__ = step_then_crash
sys.exit(main(sys.argv[1:]))
