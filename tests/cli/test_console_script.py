"""The installed entry points as real processes, once each: the `mpdit` console script and
`python -m mpdit` exit 2 with one line and no traceback. (Every other command test runs main()
in-process, helpers.cli.run_cli.)"""
import shutil
import subprocess

import pytest
import torch

from helpers.cli import run_module


def test_the_console_script_says_a_bad_checkpoint_in_one_line(tmp_path):
    script = shutil.which("mpdit")
    if script is None:
        pytest.skip("the mpdit console script is not on PATH (pip install -e . puts it there)")
    torch.save({"blocks.0.adaLN_modulation.1.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    result = subprocess.run([script, "convert", "--from", "dit", "--model", "DiT-S/8", str(tmp_path / "bad.pt"),
                             "--out", str(tmp_path / "x.safetensors")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("mpdit convert: error: checkpoint=") and result.stderr.count("\n") == 1


def test_python_dash_m_mpdit_says_a_bad_option_in_one_line():
    assert run_module("flops", "--bogus").error == "mpdit: error: unrecognized arguments: --bogus"
