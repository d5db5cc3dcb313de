"""One run per run folder (a lock naming its holder; stale locks taken over), partial checkpoints of
dead writers removed, a full disk during a save said in one line with the previous checkpoint intact."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from helpers.cli import module_command, run_cli
from helpers.runs import TRAIN_ARGS, wait_until
from helpers.runs import digits_config as config
from mpdit.io import checkpoint_file, load_checkpoint
from mpdit.io.run_lock import RunDirInUse, RunLock
from mpdit.training import checkpoint
from mpdit.training.trainer import train


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(run_dir, pid, host=None, torchrun_job=None):
    run_dir.mkdir(exist_ok=True)
    (run_dir / "train.lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                    "started": "2026-11-27 10:00:00", "torchrun_job": torchrun_job}))


def test_a_live_holder_stops_the_second_run_naming_it(tmp_path):
    write_lock(tmp_path / "run", os.getpid())  # this very process: alive
    with pytest.raises(RunDirInUse, match=rf"in use by PID {os.getpid()} on {socket.gethostname()} \(since "
                                          r"2026-11-27 10:00:00\)"):
        train(config(tmp_path / "run", 1))
    assert sorted(os.listdir(tmp_path / "run")) == ["train.lock"]  # nothing written, the lock left to its holder


def test_a_stale_lock_is_taken_over_with_a_warning_and_released_at_the_end(tmp_path, capsys):
    pid = dead_pid()
    write_lock(tmp_path / "run", pid)
    train(config(tmp_path / "run", 1))
    assert f"taking over {tmp_path / 'run' / 'train.lock'} from PID {pid}" in capsys.readouterr().err
    assert not (tmp_path / "run" / "train.lock").exists()


def test_lock_on_another_host_is_not_guessed_stale(tmp_path):
    write_lock(tmp_path / "run", dead_pid(), host="some-other-node")
    with pytest.raises(RunDirInUse, match="on some-other-node .*remove it"):
        RunLock(str(tmp_path / "run")).acquire()


def test_a_lock_of_an_earlier_round_of_the_same_torchrun_job_is_taken_over(tmp_path, monkeypatch, capsys):
    """torchrun restarted the workers and rank 0 is now on another node: the lock the failed
    round's rank 0 left there is this job's own. Another job's lock, or the default id, is not."""
    write_lock(tmp_path / "run", 12345, host="node-07", torchrun_job="xl-run-1")
    for job in ("xl-run-2", "none", None):
        if job:
            monkeypatch.setenv("TORCHELASTIC_RUN_ID", job)
        else:
            monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
        with pytest.raises(RunDirInUse, match="in use by PID 12345 on node-07"):
            RunLock(str(tmp_path / "run")).acquire()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "xl-run-1")
    lock = RunLock(str(tmp_path / "run"))
    lock.acquire()
    assert "from PID 12345 on node-07, a worker of an earlier round of this torchrun job" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "train.lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_partial_checkpoints_of_dead_writers_are_removed_at_start(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / f"ckpt-00000002.pt.tmp-{dead_pid()}"
    live = run / f"ckpt-00000003.pt.tmp-{os.getpid()}"
    stale.write_bytes(b"partial")
    live.write_bytes(b"being written")
    train(config(run, 1))
    assert not stale.exists() and live.exists()
    assert f"removed {stale}, the partial checkpoint of a writer that is gone" in capsys.readouterr().err


class _FullDisk:
    """open() whose files take `room` bytes and then fail with ENOSPC, as a full disk does."""

    def __init__(self, room):
        self.room = room

    def __call__(self, path, mode="r", *args, **kwargs):
        real = open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return real
        room = self

        class Full:
            def write(self, data):
                if len(data) > room.room:
                    raise OSError(errno.ENOSPC, "No space left on device")
                room.room -= len(data)
                return real.write(data)

            def __getattr__(self, name):
                return getattr(real, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                real.close()

        return Full()


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    state = {"model": {"w": torch.randn(1000)}, "step": 1}
    first = checkpoint.save(state, str(tmp_path), 1)
    monkeypatch.setattr(checkpoint_file, "open", _FullDisk(room=2000), raising=False)
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.save({**state, "step": 2}, str(tmp_path), 2)
    assert str(caught.value) == f"no space left writing {checkpoint.checkpoint_path(str(tmp_path), 2)}; " \
                                f"{first} is intact"
    assert os.listdir(tmp_path) == [os.path.basename(first)]  # no partial file left
    monkeypatch.undo()
    assert load_checkpoint(first)["step"] == 1


def test_full_disk_in_training_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_file, "open", _FullDisk(room=100), raising=False)
    result = run_cli(*TRAIN_ARGS, "--steps", "1", "--run-dir", tmp_path / "run")
    lines = result.err.rstrip("\n").split("\n")
    start, error = lines[0], result.last_line  # what it runs (before the first step), the progress bar, the error
    assert start.startswith("mpdit train: MPDiT-S, ") and error.startswith("mpdit train: error: ")
    assert "no space left writing" in error and "no earlier checkpoint in the run folder" in error
    assert not (tmp_path / "run" / "train.lock").exists()  # released on the way out


@pytest.mark.slow
def test_second_cli_run_on_a_folder_in_use_exits_at_once_while_the_first_goes_on(tmp_path):
    """The pinned interface: refused at once, the first run (another process) unharmed, then
    SIGTERM -> 143."""
    run_dir = tmp_path / "run"
    args = [*TRAIN_ARGS, "--run-dir", run_dir, "--checkpoint-every", "1000"]
    first = subprocess.Popen(module_command(*args, "--steps", "100000"), stderr=subprocess.PIPE, text=True)
    try:
        wait_until((run_dir / "metrics.jsonl").exists, 120, "the first run's first step", process=first)
        start = time.time()
        second = run_cli(*args, "--steps", "5")
        assert time.time() - start < 30
        assert f"in use by PID {first.pid} on {socket.gethostname()}" in second.error
        assert first.poll() is None  # still training
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "stopped at step" in err
    assert not (run_dir / "train.lock").exists()
