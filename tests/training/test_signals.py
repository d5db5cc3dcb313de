"""A run stopped from outside: SIGTERM saves the step reached and exits 143, and the run resumes to
what an uninterrupted one computes; SIGKILL mid-save leaves the last complete checkpoint; under
torchrun a signal to one rank stops both at the same step. Real processes: the signal and the
process boundary are the subject."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from helpers.cli import module_command, run_cli
from helpers.runs import TRAIN_ARGS, wait_until
from helpers.torchrun import torchrun_command, worker_env
from mpdit.io import load_checkpoint
from mpdit.training import checkpoint

pytestmark = pytest.mark.slow


def logged_steps(run_dir) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def test_sigterm_saves_the_step_reached_and_resume_equals_an_uninterrupted_run(tmp_path):
    base = [*TRAIN_ARGS, "--checkpoint-every", "1000"]
    stopped = tmp_path / "stopped"
    process = subprocess.Popen(module_command(*base, "--steps", "200", "--run-dir", stopped), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: logged_steps(stopped) >= 2, 240, "two logged steps", process=process)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    path = checkpoint.latest(str(stopped))
    step = load_checkpoint(path)["step"]
    assert 2 <= step < 200 and f"mpdit train: stopped at step {step}; checkpoint {path}" in err
    assert "Traceback" not in err
    end = str(step + 2)
    run_cli(*base, "--steps", end, "--run-dir", stopped, "--resume", "auto").ok()
    run_cli(*base, "--steps", end, "--run-dir", tmp_path / "straight").ok()
    a, b = (load_checkpoint(checkpoint.latest(str(d))) for d in (stopped, tmp_path / "straight"))
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][name], tensor) for name, tensor in b[key].items()), key


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigterm_to_the_whole_process_group_with_loader_workers_saves_the_step_reached(tmp_path):
    """What scancel, a preemption or kill -- -PGID sends: the loader's workers get the signal too,
    and must leave the stop to the main process, which saves and exits 143; nothing is left running."""
    command = module_command(*TRAIN_ARGS, "--num-workers", "2", "--checkpoint-every", "1000", "--steps", "200",
                             "--run-dir", tmp_path)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        wait_until(lambda: logged_steps(tmp_path) >= 2, 240, "two logged steps", process=process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    path = checkpoint.latest(str(tmp_path))
    step = load_checkpoint(path)["step"]
    assert f"mpdit train: stopped at step {step}; checkpoint {path}" in err and "Traceback" not in err, err[-3000:]
    wait_until(lambda: group_gone(process.pid), 30, "the loader's workers gone")


def stop_a_torchrun_job(run_dir, send, *options) -> str:
    """The tiny run on two torchrun workers, `send(agent)` once two steps are logged: both ranks
    must stop after the same step with rank 0's checkpoint. Returns the job's stderr."""
    command = torchrun_command(["-m", "mpdit", *TRAIN_ARGS, "--checkpoint-every", "1000", "--steps", "500",
                                "--run-dir", run_dir, *options], per_node=2)
    agent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, env=worker_env())
    try:
        wait_until(lambda: logged_steps(run_dir) >= 2, 240, "two logged steps", process=agent)
        send(agent)
        _, err = agent.communicate(timeout=180)
    finally:  # a hung job (ranks that disagree) must not outlive the test
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
    path = checkpoint.latest(str(run_dir))
    assert path is not None, err[-3000:]
    step = load_checkpoint(path)["step"]
    assert 2 <= step < 500
    assert err.count(f"mpdit train: stopped at step {step}; checkpoint {path}") == 2, err[-3000:]  # both ranks
    return err


@pytest.mark.distributed
def test_sigterm_to_a_torchrun_job_with_loader_workers_saves_the_step_reached(tmp_path):
    """The same to torchrun's agent, its two workers and their loaders' workers."""
    pgid = []
    err = stop_a_torchrun_job(tmp_path, lambda agent: pgid.append(agent.pid) or os.killpg(agent.pid, signal.SIGTERM),
                              "--num-workers", "2")
    assert "killed by signal" not in err, err[-3000:]
    wait_until(lambda: group_gone(pgid[0]), 30, "the job's processes gone")


def test_sigkill_while_checkpointing_leaves_a_loadable_checkpoint(tmp_path):
    """Kill the trainer while a checkpoint file is growing (a write in progress): the latest
    complete checkpoint must still load. A trainer writing in place would leave a torn file."""
    process = subprocess.Popen(module_command(*TRAIN_ARGS, "--steps", "1000", "--run-dir", tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sizes, killed_mid_write = {}, []

    def growing_file_killed() -> bool:
        for path in tmp_path.glob("ckpt-*"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # renamed between the listing and the stat
                continue
            if len(sizes) > 3 and sizes.get(path, size) != size:  # growing: a write is under way
                process.send_signal(signal.SIGKILL)
                killed_mid_write.append(path)
                return True
            sizes[path] = size
        return False

    try:
        wait_until(growing_file_killed, 120, "a checkpoint seen growing", process=process, poll=0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert killed_mid_write
    path = checkpoint.latest(str(tmp_path))
    assert path is not None
    state = load_checkpoint(path)  # complete, whatever the kill interrupted
    assert state["step"] >= 1


def _children_by_rank(parent: int) -> dict:
    """{RANK: pid} of torchrun's worker processes (Linux /proc)."""
    workers = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if b"RANK" in env:
            workers[int(env[b"RANK"])] = int(entry)
    return workers


@pytest.mark.distributed
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads torchrun's workers from /proc")
def test_torchrun_ranks_agree_on_the_step_when_one_rank_is_signalled(tmp_path):
    """SIGTERM to rank 1 only: both ranks stop after the same step, rank 0 writes its checkpoint."""

    def to_rank_1(agent):
        workers = _children_by_rank(agent.pid)
        if set(workers) != {0, 1}:
            pytest.fail(f"torchrun workers not found: {workers}")
        os.kill(workers[1], signal.SIGTERM)

    stop_a_torchrun_job(tmp_path / "run", to_rank_1)
