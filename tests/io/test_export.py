"""An EMA export (`mpdit export-ema`) loads back with mpdit.load into the model its checkpoint
holds: the same config, the trained EMA weights, the same function."""
import pytest
import torch

import mpdit
from helpers.cli import run_cli
from mpdit.io import load_checkpoint


def test_export_loads_back_into_the_same_model(digits_run, tmp_path):
    path = digits_run.checkpoint
    run_cli("export-ema", "--checkpoint", path, "--out", tmp_path / "ema.safetensors").ok()
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
