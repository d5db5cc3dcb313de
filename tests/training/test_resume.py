"""Reliability (CPU): bad settings refused before any work, metrics logged once per step across
resumes, an unreadable newest checkpoint passed over."""
import json
import os
import subprocess
import sys

import pytest

from mpdit import create_model
from mpdit.training import checkpoint
from mpdit.training.trainer import train
from mpdit.io import load_checkpoint
from model_utils import digits_config


def config(run_dir, steps, **settings):
    return digits_config(run_dir, steps, **{"checkpoint_every": 2, **settings})

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mpdit", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--grad-clip=-1"], "grad_clip=-1.0: expected a positive norm, or 0 = off"),
    (["--lr", "nan"], "lr=nan: expected a positive learning rate"),
    (["--time-std", "0"], "time_std=0.0: expected a positive standard deviation"),
    (["--compile-mode", "max-autotune-no-cudagraphs"],
     "compile_mode='max-autotune-no-cudagraphs': applies only with compile=True (--compile)"),
    (["--compile", "--compile-mode", "max-autotune-no-cudagraphs"], "compile_mode='max-autotune-no-cudagraphs': "
     "max-autotune tunes Triton templates for a GPU's matrix products: CUDA only; got device cpu"),
])
def test_bad_training_settings_stop_before_any_work(tmp_path, args, message):
    result = run_cli("train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "4",
                     "--run-dir", str(tmp_path / "run"), *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"mpdit train: error: {message}\n"
    assert not (tmp_path / "run").exists()


def test_sample_refuses_a_nan_guidance_scale_and_an_unwritable_out_before_sampling(tmp_path):
    (tmp_path / "file").write_text("")
    for args, message in ((["--cfg-scale", "nan"], "cfg_scale=nan: expected a finite number >= 0"),
                          (["--out", str(tmp_path / "file" / "s.npz")], "a file stands where the folder")):
        result = run_cli("sample", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "s.npz"),
                         *args)
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("overrides, message", [
    ({"learn_sigma": "no"}, "learn_sigma='no': expected True or False"),
    ({"mlp_ratio": 0}, "mlp_ratio=0: expected a positive finite number"),
    ({"skip": 1}, "skip=1: expected True or False"),
])
def test_create_model_takes_only_real_booleans_and_ratios(overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model("MPDiT-S", **overrides)


def steps_logged(run_dir) -> list:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_logs_each_step_once_and_passes_over_an_unreadable_checkpoint(tmp_path, capsys):
    train(config(tmp_path, steps=4))  # checkpoints at 2 and 4; metrics 1, 2, 3, 4 and a final record
    newest = checkpoint.latest(str(tmp_path))
    data = open(newest, "rb").read()
    with open(newest, "wb") as f:  # cut short, as a full disk leaves it
        f.write(data[: len(data) // 3])
    capsys.readouterr()
    train(config(tmp_path, steps=4, resume="auto"))
    err = capsys.readouterr().err
    assert f"mpdit train: warning: skipping checkpoint={newest!r}: unreadable" in err
    assert f"resuming from {tmp_path / 'ckpt-00000002.pt'} at step 2" in err
    assert steps_logged(tmp_path) == [1, 2, 3, 4, 4]  # steps 3 and 4 once more, then one final record
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("final", False) for r in records] == [False, False, False, False, True]
    train(config(tmp_path, steps=4, resume="auto"))  # a finished run, run again: still one final record
    assert steps_logged(tmp_path) == [1, 2, 3, 4, 4]


def test_sigterm_saves_the_step_reached_and_resume_equals_an_uninterrupted_run(tmp_path):
    import signal
    import time

    import torch

    base = ["train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", "digits", "--global-batch-size", "8",
            "--num-workers", "0", "--checkpoint-every", "1000", "--sample-every", "0", "--log-every", "1"]
    stopped = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "mpdit", *base, "--steps", "200", "--run-dir", str(stopped)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if (stopped / "metrics.jsonl").exists() and len((stopped / "metrics.jsonl").read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    path = checkpoint.latest(str(stopped))
    step = load_checkpoint(path)["step"]
    assert 2 <= step < 200 and f"mpdit train: stopped at step {step}; checkpoint {path}" in err
    assert "Traceback" not in err
    end = str(step + 2)
    resumed = run_cli(*base, "--steps", end, "--run-dir", str(stopped), "--resume", "auto")
    straight = run_cli(*base, "--steps", end, "--run-dir", str(tmp_path / "straight"))
    assert resumed.returncode == straight.returncode == 0, resumed.stderr[-2000:] + straight.stderr[-2000:]
    a, b = (load_checkpoint(checkpoint.latest(str(d))) for d in (stopped, tmp_path / "straight"))
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][name], tensor) for name, tensor in b[key].items()), key


def test_resume_refuses_a_changed_data_order_and_warns_of_other_changes(tmp_path, capsys):
    from mpdit.training.checkpoint import CheckpointError

    train(config(tmp_path, steps=2))
    for change, message in (({"seed": 1}, "seed was 0, now 1"), ({"global_batch_size": 4}, "global_batch_size was 8")):
        with pytest.raises(CheckpointError, match=message):
            train(config(tmp_path, steps=3, resume="auto", **change))
    capsys.readouterr()
    train(config(tmp_path, steps=3, resume="auto", lr=2e-4, grad_clip=0.5, micro_batch_size=4))
    # the micro-batch, like the number of processes, changes only the order of the sums: no word
    assert "warning: resuming with changed settings: lr: 0.0001 -> 0.0002; grad_clip: 1.0 -> 0.5\n" in \
        capsys.readouterr().err


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads torchrun's workers from /proc")
def test_torchrun_ranks_agree_on_the_step_when_one_rank_is_signalled(tmp_path):
    """SIGTERM to rank 1 only: both ranks stop after the same step, rank 0 writes its checkpoint."""
    import signal
    import time

    run_dir = tmp_path / "run"
    # --standalone: a free rendezvous port, so a leftover job elsewhere cannot block this one
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "mpdit", "train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset",
                              "digits", "--global-batch-size", "8", "--num-workers", "0", "--checkpoint-every", "1000",
                              "--sample-every", "0", "--log-every", "1", "--steps", "500", "--run-dir", str(run_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and agent.poll() is None:
            metrics = run_dir / "metrics.jsonl"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        workers = _children_by_rank(agent.pid)
        if set(workers) != {0, 1}:
            err = agent.communicate(timeout=60)[1]
            pytest.fail(f"torchrun workers not found: {workers}; its stderr: {err[-3000:]}")
        os.kill(workers[1], signal.SIGTERM)
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
