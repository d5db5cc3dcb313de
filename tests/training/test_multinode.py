"""Past one machine, on one: two torchrun agents on 127.0.0.1 stand for two nodes (c10d
rendezvous, gloo). Training on 2 nodes equals one process within the reduction order; a worker
that dies is restarted by torchrun and the run ends bit-identical; a run resumed on another number
of processes (2 -> 1, 1 -> 4 with FSDP2, 4 -> 1) sees the same global batches; sampling on 2 nodes
gives one process's images. Each launch is bounded by multinode.TIMEOUT."""
import shutil

import numpy as np
import pytest
import torch

from helpers.cli import run_cli
from helpers.runs import digits_config
from helpers.torchrun import FAULTY_WORKER, TRAIN, one_thread, torchrun
from mpdit.io import load_checkpoint
from mpdit.training import checkpoint
from mpdit.training.trainer import train

pytestmark = pytest.mark.distributed

STEPS = 6


def one_process(run_dir, steps=STEPS, **kwargs) -> None:
    """TRAIN's run in this process (world of one), on one thread as each torchrun worker."""
    with one_thread():
        train(digits_config(run_dir, steps, lr=1e-3, checkpoint_every=2, keep_checkpoints=0, **kwargs))


def state_at(run_dir, step: int) -> dict:
    return load_checkpoint(checkpoint.checkpoint_path(str(run_dir), step))


def assert_same_run(a: dict, b: dict, exact: bool) -> None:
    """Weights, EMA and Adam moments: bit-identical, or within the reduction order's rounding."""
    assert a["step"] == b["step"] and a["data"] == b["data"]
    tensors = [(f"{key}.{name}", a[key][name], b[key][name]) for key in ("model", "ema") for name in b[key]]
    for index, moments in b["optimizer"]["state"].items():
        tensors += [(f"adam.{index}.{k}", a["optimizer"]["state"][index][k], v) for k, v in moments.items()]
    for name, x, y in tensors:
        if exact:
            assert torch.equal(x, y), name
        else:  # another reduction order: ~1e-7; another data order or draws: ~lr = 1e-3
            torch.testing.assert_close(x, y, rtol=1e-4, atol=2e-6, msg=name)


def launch_ok(launch) -> None:
    assert launch.returncode == 0, launch.output[-4000:]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """The reference: 2 agents x 1 worker, STEPS uninterrupted steps."""
    run_dir = tmp_path_factory.mktemp("two-nodes")
    launch = torchrun(TRAIN + ["--steps", str(STEPS), "--run-dir", str(run_dir)], nodes=2)
    launch_ok(launch)
    return run_dir, launch.output


@pytest.fixture(scope="module")
def one_proc(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one-process")
    one_process(run_dir)
    return run_dir


def test_two_agents_train_as_one_process_with_the_same_global_batch(two_nodes, one_proc):
    run_dir, output = two_nodes
    assert "cpu x 2 process(es)" in output  # the start line: one world over both agents
    assert_same_run(state_at(run_dir, STEPS), state_at(one_proc, STEPS), exact=False)


@pytest.mark.parametrize("nodes, per_node", [(2, 1), (1, 2)], ids=["two-agents", "one-agent"])
def test_a_worker_that_dies_is_restarted_and_the_run_ends_bit_identical(two_nodes, tmp_path, nodes, per_node):
    """Rank 1 exits after step 3 (checkpoints at 2, 4, 6): torchrun restarts both workers, which
    resume from step 2 and finish as the uninterrupted run did, bit for bit. The workers do not
    share the agent's store (docs/multi-node.md, "Restarts": without it a restart can fail)."""
    launch = torchrun([FAULTY_WORKER, *TRAIN[2:], "--steps", STEPS, "--run-dir", tmp_path, "--resume", "auto"],
                      nodes=nodes, per_node=per_node, max_restarts=1,
                      env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "FAIL_RANK": "1", "FAIL_AFTER": "3"})
    launch_ok(launch)
    assert "rank 1 exits after step 3" in launch.output
    assert "resuming from" in launch.output and "at step 2" in launch.output
    assert_same_run(state_at(tmp_path, STEPS), state_at(two_nodes[0], STEPS), exact=True)


def test_two_processes_resumed_on_one_see_the_same_global_batches(two_nodes, tmp_path):
    shutil.copy(checkpoint.checkpoint_path(str(two_nodes[0]), 2), tmp_path)
    one_process(tmp_path, resume="auto")
    assert_same_run(state_at(tmp_path, STEPS), state_at(two_nodes[0], STEPS), exact=False)


def test_one_process_resumed_on_four_with_fsdp_and_back_on_one(one_proc, tmp_path):
    """1 -> 4 (FSDP2, micro-batch 1: two micro-batches a step per process) from step 2, then that
    run's step-4 checkpoint, written by four sharded processes, resumed on one up to step 6."""
    for name in ("four", "back"):
        (tmp_path / name).mkdir()
    shutil.copy(checkpoint.checkpoint_path(str(one_proc), 2), tmp_path / "four")
    launch_ok(torchrun(TRAIN + ["--steps", "4", "--run-dir", str(tmp_path / "four"), "--resume", "auto",
                                "--parallel", "fsdp", "--micro-batch-size", "1"], per_node=4))
    assert_same_run(state_at(tmp_path / "four", 4), state_at(one_proc, 4), exact=False)
    shutil.copy(checkpoint.checkpoint_path(str(tmp_path / "four"), 4), tmp_path / "back")
    one_process(tmp_path / "back", resume="auto", parallel="fsdp")
    assert_same_run(state_at(tmp_path / "back", STEPS), state_at(one_proc, STEPS), exact=False)


def test_a_world_that_cannot_divide_the_global_batch_is_refused_in_one_line(one_proc, tmp_path):
    shutil.copy(checkpoint.checkpoint_path(str(one_proc), 2), tmp_path)
    launch = torchrun(TRAIN + ["--steps", "4", "--run-dir", str(tmp_path), "--resume", "auto"], per_node=3)
    assert launch.returncode != 0
    refusals = [line for line in launch.output.splitlines() if line.startswith("mpdit train: ")]
    assert refusals and all(line == refusals[0] for line in refusals), launch.output[-3000:]
    assert "global_batch_size=8: expected a multiple of the 3 processes" in refusals[0]


def test_two_agents_sample_the_images_of_one_process(two_nodes, tmp_path):
    ckpt = checkpoint.checkpoint_path(str(two_nodes[0]), STEPS)
    args = ["sample", "--checkpoint", ckpt, "--num-samples", "6", "--steps", "2", "--batch-size", "2"]
    launch_ok(torchrun(["-m", "mpdit", *args, "--out", tmp_path / "two.npz"], nodes=2))
    with one_thread():
        run_cli(*args, "--out", tmp_path / "one.npz").ok()
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert two["arr_0"].shape[0] == 6 and (one["labels"] == two["labels"]).all()
    assert (one["arr_0"] == two["arr_0"]).all()
