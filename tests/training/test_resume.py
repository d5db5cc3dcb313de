"""Resuming (CPU): what --resume says and keeps, metrics logged once per step, an unreadable newest
checkpoint passed over, settings a resumed run must keep, a rollback, checkpoints of earlier
versions."""
import json

import pytest
import torch

from helpers.cli import run_cli
from helpers.runs import TRAIN_ARGS, copy_run, digits_config
from mpdit import create_model
from mpdit.training import checkpoint
from mpdit.training.checkpoint import CheckpointError
from mpdit.training.data import DataPosition
from mpdit.training.trainer import train


def config(run_dir, steps, **settings):
    return digits_config(run_dir, steps, **{"checkpoint_every": 2, **settings})


def steps_logged(run_dir) -> list:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_says_where_it_starts_and_keeps_the_newest_checkpoints(tmp_path):
    args = [*TRAIN_ARGS, "--run-dir", tmp_path, "--resume", "auto", "--keep-checkpoints", "2"]
    first = run_cli(*args, "--steps", "3").ok()
    assert f"mpdit train: no checkpoint in {tmp_path}; starting from step 0" in first.err
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    second = run_cli(*args, "--steps", "4").ok()
    assert f"mpdit train: resuming from {tmp_path / 'ckpt-00000003.pt'} at step 3" in second.err


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


def test_resume_refuses_a_changed_data_order_and_warns_of_other_changes(digits_run, tmp_path, capsys):
    run = copy_run(digits_run.folder, tmp_path / "run")
    for change, message in (({"seed": 1}, "seed was 0, now 1"), ({"global_batch_size": 4}, "global_batch_size was 8")):
        with pytest.raises(CheckpointError, match=message):
            train(config(run, steps=3, resume="auto", **change))
    capsys.readouterr()
    train(config(run, steps=3, resume="auto", lr=2e-4, grad_clip=0.5, micro_batch_size=4))
    # the micro-batch, like the number of processes, changes only the order of the sums: no word
    assert "warning: resuming with changed settings: lr: 0.0001 -> 0.0002; grad_clip: 1.0 -> 0.5\n" in \
        capsys.readouterr().err


def test_resuming_another_models_checkpoint_is_refused(digits_run, tmp_path):
    run = copy_run(digits_run.folder, tmp_path / "run")
    result = run_cli(*TRAIN_ARGS, "--stages", "4:2,2:1", "--steps", "3", "--run-dir", run, "--resume", "auto")
    assert "it is for another model" in result.error and "stages" in result.error


def test_a_rolled_back_run_keeps_the_abandoned_checkpoints_aside_and_one_history(tmp_path, capsys):
    """Resume from step 2 of a 4-step run with keep 1: the new step-3 checkpoint is kept, the
    abandoned step 4 is moved aside (not pruned, not found by --resume auto), and metrics.jsonl
    holds one history."""
    run = tmp_path / "run"
    train(digits_config(run, steps=4, checkpoint_every=2, keep_checkpoints=0))
    train(digits_config(run, steps=3, checkpoint_every=1, keep_checkpoints=1, resume=str(run / "ckpt-00000002.pt")))
    assert [p.name for p in run.glob("ckpt-*.pt")] == ["ckpt-00000003.pt"]
    assert checkpoint.latest(str(run)).endswith("ckpt-00000003.pt")
    aside = list(run.glob("rolled-back-*"))
    assert len(aside) == 1 and (aside[0] / "ckpt-00000004.pt").exists()
    assert "rolling back: moved the checkpoints of steps 4" in capsys.readouterr().err
    old = [json.loads(line)["step"] for line in (aside[0] / "metrics.jsonl").read_text().splitlines()]
    new = steps_logged(run)
    assert max(old) == 4 and max(new) == 3
    assert [s for s in new if s <= 3] == new and new[:-1] == sorted(new[:-1])  # one history (then the final)


def test_a_checkpoint_counting_micro_batches_per_process_resumes_at_its_sample():
    """Checkpoints of the previous version kept `batches_consumed` per process: 60 micro-batches
    of 2 on 2 processes of 1,797 digits (449 micro-batches an epoch) is sample 240 of epoch 0."""
    from mpdit.training.trainer import data_position

    state = {"data": {"batches_consumed": 60}, "rng": {"generators": [None, None]},
             "train_config": {"micro_batch_size": 2, "global_batch_size": 8}}
    assert data_position(state, 1797) == DataPosition(0, 240)
    state["data"]["batches_consumed"] = 450
    assert data_position(state, 1797) == DataPosition(1, 4)
    assert data_position({"data": {"epoch": 3, "offset": 16}}, 1797) == DataPosition(3, 16)


def test_an_optimizer_state_numbered_by_an_earlier_version_loads_by_name():
    from mpdit.training.distributed import by_name, full_state, load_full_state

    torch.manual_seed(0)
    model = create_model("MPDiT-S", stages=((4, 1), (2, 1)), in_channels=1, latent_size=16, num_classes=10)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(torch.randn(2, 1, 16, 16), torch.rand(2), torch.tensor([1, 2])).square().mean().backward()
    optimizer.step()
    numbered = optimizer.state_dict()
    named = full_state(model, model, optimizer, sharded=False)[2]
    assert by_name(numbered, model)["param_groups"] == named["param_groups"]
    assert by_name(named, model) is named
    fresh = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    load_full_state({"model": model.state_dict(), "ema": model.state_dict(), "optimizer": numbered}, model, model,
                    fresh, sharded=False)
    for index, moments in numbered["state"].items():
        assert all(torch.equal(fresh.state_dict()["state"][index][k], v) for k, v in moments.items())

