"""`mpdit export-ema`: the EMA weights as .safetensors, the output's suffix checked first."""
from helpers.cli import run_cli


def test_export_ema_command(digits_run, tmp_path):
    out = tmp_path / "ema.safetensors"
    run_cli("export-ema", "--checkpoint", digits_run.checkpoint, "--out", out).ok()
    assert out.stat().st_size > 0
    bad = run_cli("export-ema", "--checkpoint", digits_run.checkpoint, "--out", tmp_path / "x.bin")
    assert "expected a path ending in .safetensors" in bad.error
