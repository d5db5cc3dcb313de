"""`mpdit ablation` on the command line: --dry-run's rows, and each mistake one line with nothing
written."""
import json
import os
import socket

import numpy as np
import pytest

from helpers.cli import run_cli
from mpdit.audit.flops import audit

RUN = ["ablation", "--size", "S", "--dataset", "digits", "--image-size", "8", "--steps", "2", "--global-batch-size",
       "8", "--eval-ref", "digits", "--eval-samples", "4", "--eval-steps", "2", "--num-workers", "0"]


def test_dry_run_prints_every_row_with_its_switches_and_counts():
    result = run_cli("ablation", "--table", "all", "--size", "XL", "--dry-run").ok()
    lines = result.out.splitlines()
    assert "| k4 | MPDiT-XL k = 4 | MPDiT-XL: fine_depth=4 | 481.21 | 53.19 | 481.2 | 53.2 | 11.11 |" in lines
    assert any(line.startswith("| mpdit-k6 | + MPDiT (k = 6) | DiT-XL/2: shared_adaln=True") for line in lines)
    assert len([line for line in lines if line.startswith("| ") and "**" not in line]) == 1 + 9  # header + rows
    rows = json.loads(run_cli("ablation", "--table", "1", "--dry-run", "--json").ok().out)
    assert [row["key"] for row in rows] == ["dit", "shared-adaln", "class-tokens", "fno-time", "mpdit-k6"]
    assert rows[4]["gflops"] == pytest.approx(16.63, abs=0.01)


def _reference(path, side):
    np.savez(path, arr_0=np.random.default_rng(0).integers(0, 256, (4, side, side, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("extra, message", [
    (["--table", "2"], "argument --table: invalid choice: '2'"),
    (["--rows", "dit,k9"], "rows='k9': not a row of table 1"),
    (["--seeds", "0,a"], "argument --seeds: '0,a': expected comma-separated integers"),
    (["--seeds", "1,1"], "seeds='1,1': expected distinct integers"),
    (["--eval-every", "5"], "steps=2: too small for one evaluation every 5 steps (--eval-every)"),
    (["--eval-samples", "3"], "eval_samples=3: too few for one evaluation"),
    (["--parallel", "fsdp"], "parallel='fsdp': every row is evaluated during training"),
    (["--eval-ref", "{ref32}"], "eval_ref='{ref32}': holds 32 x 32 images; the rows sample 8 x 8"),
])
def test_a_mistake_is_one_line_and_writes_nothing(tmp_path, extra, message):
    out, ref32 = tmp_path / "ablation", _reference(tmp_path / "ref32.npz", 32)
    argv = [arg.format(ref32=ref32) for arg in [*RUN, "--out", str(out), *extra]]
    assert message.format(ref32=ref32) in run_cli(*argv).error
    assert not out.exists()


def test_on_latents_the_reference_must_have_the_decoded_side(tmp_path):
    """Latents extracted at 32 px (4 x 4 latents, the VAE's 8x): a 16 px reference is refused, with
    the rows' GFLOPs counted on the latents' shape."""
    import torch
    from safetensors.torch import save_file

    latents = tmp_path / "latents"
    latents.mkdir()
    save_file({"latents": torch.randn(8, 4, 4, 4), "labels": torch.arange(8) % 2}, str(latents / "a.safetensors"))
    (latents / "latents.json").write_text(json.dumps({"num_classes": 2, "image_size": 32}))
    argv = ["ablation", "--table", "4", "--size", "S", "--dataset", latents, "--steps", "2", "--global-batch-size",
            "4", "--eval-samples", "4", "--out", tmp_path / "ablation"]
    error = run_cli(*argv, "--eval-ref", _reference(tmp_path / "ref16.npz", 16)).error
    assert error.endswith("ref16.npz': holds 16 x 16 images; the rows sample 32 x 32")
    rows = json.loads(run_cli(*argv[:-2], "--dry-run", "--json").ok().out)
    on_latents = audit("MPDiT-S", fine_depth=4, in_channels=4, latent_size=4, num_classes=2)
    assert rows[1]["key"] == "k4" and rows[1]["gflops"] == pytest.approx(on_latents.gflops_paper, rel=1e-9)
    assert rows[1]["gflops"] < audit("MPDiT-S", fine_depth=4).gflops_paper / 5  # not ImageNet's 32 x 32 latents


def test_the_rows_need_a_dataset_a_budget_and_a_reference(tmp_path):
    out = tmp_path / "ablation"
    for name in ("--dataset", "--steps", "--eval-ref"):
        argv = [*RUN, "--out", str(out)]
        at = argv.index(name)
        del argv[at:at + 2]
        option = name[2:].replace("-", "_")
        assert f"{option}: required to run the rows ({name}; not with --dry-run)" in run_cli(*argv).error
    assert "out: required to run the rows (--out" in run_cli(*RUN).error
    assert not out.exists()


def test_a_folder_in_use_or_of_other_settings_is_refused_untouched(tmp_path):
    out = tmp_path / "ablation"
    out.mkdir()
    (out / "ablation.lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": "then"}))
    assert "out='%s': in use by PID 1" % out in run_cli(*RUN, "--out", out).error
    os.remove(out / "ablation.lock")
    settings = {"size": "S", "steps": 400}
    (out / "ablation.json").write_text(json.dumps(settings))
    error = run_cli(*RUN, "--out", out).error
    assert f"out='{out}': holds an ablation with other settings (" in error
    assert "steps=400 there, 2 here" in error and "use the same settings to continue it, or another --out" in error
    assert json.loads((out / "ablation.json").read_text()) == settings and sorted(os.listdir(out)) == ["ablation.json"]
