"""A newcomer's path (CPU): EMA warm-up, resume messages, keep-K checkpoints, --num-samples,
export -> mpdit.load, the top-level API."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import mpdit
from mpdit.training import checkpoint
from mpdit.training.step import ema_decay_at
from mpdit.training.trainer import train
from mpdit.io import export_ema, load_checkpoint
from model_utils import digits_config as config

@pytest.mark.parametrize("step, decay", [(0, 0.1), (10, 0.55), (1000, 1001 / 1010), (10 ** 6, 0.9999)])
def test_ema_warmup_follows_the_weights_early_then_settles(step, decay):
    assert ema_decay_at(config("r", 1), step) == pytest.approx(decay)
    assert ema_decay_at(config("r", 1, ema_warmup=False), step) == 0.9999


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mpdit", *args], capture_output=True, text=True, timeout=300)


def test_resume_says_where_it_starts_and_keeps_the_newest_checkpoints(tmp_path):
    args = ["train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", "digits", "--global-batch-size", "8",
            "--run-dir", str(tmp_path), "--num-workers", "0", "--checkpoint-every", "1", "--sample-every", "0",
            "--resume", "auto", "--keep-checkpoints", "2"]
    first = run_cli(*args, "--steps", "3")
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"mpdit train: no checkpoint in {tmp_path}; starting from step 0" in first.stderr
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    second = run_cli(*args, "--steps", "4")
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"mpdit train: resuming from {tmp_path / 'ckpt-00000003.pt'} at step 3" in second.stderr


def test_export_loads_back_into_the_same_model(tmp_path):
    train(config(tmp_path, steps=2))
    path = checkpoint.latest(str(tmp_path))
    export = run_cli("export-ema", "--checkpoint", path, "--out", str(tmp_path / "ema.safetensors"))
    assert export.returncode == 0, export.stderr
    from_export = mpdit.load(str(tmp_path / "ema.safetensors"))
    from_checkpoint = mpdit.load(path)
    assert from_export.config == from_checkpoint.config and from_export.config.in_channels == 1
    ema = load_checkpoint(path)["ema"]  # the trained EMA weights, not a fresh (zero-initialised) head
    for model in (from_export, from_checkpoint):
        assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in ema.items())
    x = torch.randn(2, 1, 16, 16)
    t, y = torch.rand(2), torch.tensor([3, 7])
    torch.testing.assert_close(from_export(x, t, y), from_checkpoint(x, t, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="an export holds the EMA weights only"):
        mpdit.load(str(tmp_path / "ema.safetensors"), weights="model")


def test_sample_num_samples_is_balanced_and_takes_an_export(tmp_path):
    train(config(tmp_path, steps=1))
    export_ema(load_checkpoint(checkpoint.latest(str(tmp_path))),
                                      str(tmp_path / "ema.safetensors"))
    result = run_cli("sample", "--checkpoint", str(tmp_path / "ema.safetensors"), "--out", str(tmp_path / "s.npz"),
                     "--classes", "0,1,2", "--num-samples", "12", "--steps", "2", "--batch-size", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    data = np.load(tmp_path / "s.npz")
    assert data["arr_0"].shape == (12, 16, 16, 1) and sorted(np.bincount(data["labels"]).tolist()) == [4, 4, 4]


def test_top_level_api_samples_a_tensor_from_a_list_of_labels():
    model = mpdit.create_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)]).eval()
    x = mpdit.sample(model, [1, 2], steps=2)
    assert isinstance(x, torch.Tensor) and x.shape == (2, 4, 8, 8)
    x, nfe = mpdit.sample(model, [1, 2], steps=2, cfg_scale=2.0, return_nfe=True)
    assert nfe == 2
    loss = mpdit.flow_matching_loss(model, torch.randn(2, 4, 8, 8), [1, 2])
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert callable(mpdit.decode) and callable(mpdit.load)
