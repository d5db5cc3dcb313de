"""A checkpoint file that is cut short or missing: one line naming it, in the loader and in
`mpdit sample`."""
import pytest

from helpers.cli import run_cli
from mpdit.io import load_checkpoint
from mpdit.training.checkpoint import CheckpointError


def test_truncated_and_missing_checkpoints(digits_run, tmp_path):
    data = open(digits_run.checkpoint, "rb").read()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable .* truncated"):
        load_checkpoint(str(broken))
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    assert "truncated" in run_cli("sample", "--checkpoint", broken, "--out", tmp_path / "s.npz").error
