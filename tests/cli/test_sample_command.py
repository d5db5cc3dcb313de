"""`mpdit sample`: an .npz in the ADM layout and a PNG grid, balanced --num-samples from an export,
the progress of a long batch, and each refusal in one line before any sampling."""
import numpy as np
import pytest
import torch

from helpers.cli import run_cli


def test_sample_command_writes_npz_and_grid(digits_run, tmp_path):
    out = tmp_path / "samples.npz"
    result = run_cli("sample", "--checkpoint", digits_run.checkpoint, "--classes", "0,1,2", "--per-class", "2",
                     "--cfg-scale", "2", "--steps", "3", "--out", out).ok()
    assert "batch: model call 3/3" in result.err  # a long batch shows its progress, not only "0/1"
    arrays = np.load(out)
    assert arrays["arr_0"].shape == (6, 16, 16, 1) and arrays["arr_0"].dtype == np.uint8
    assert list(arrays["labels"]) == [0, 0, 1, 1, 2, 2]
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert "classes=[12]" in run_cli("sample", "--checkpoint", digits_run.checkpoint, "--classes", "12", "--out",
                                     out).error
    pixels = run_cli("sample", digits_run.checkpoint, "--latents-only", "--out", tmp_path / "l.npz").error
    assert "--latents-only: checkpoint=" in pixels and "pixel-space" in pixels
    both = run_cli("sample", digits_run.checkpoint, "--latents-only", "--eval", out, "--out", tmp_path / "l.npz")
    assert "--latents-only with --eval" in both.error


def test_sample_num_samples_is_balanced_and_takes_an_export(digits_export, tmp_path):
    run_cli("sample", "--checkpoint", digits_export, "--out", tmp_path / "s.npz", "--classes", "0,1,2",
            "--num-samples", "12", "--steps", "2", "--batch-size", "5").ok()
    data = np.load(tmp_path / "s.npz")
    assert data["arr_0"].shape == (12, 16, 16, 1) and sorted(np.bincount(data["labels"]).tolist()) == [4, 4, 4]


def test_sample_refuses_a_nan_guidance_scale_and_an_unwritable_out_before_sampling(tmp_path):
    (tmp_path / "file").write_text("")
    for args, message in ((["--cfg-scale", "nan"], "cfg_scale=nan: expected a finite number >= 0"),
                          (["--out", tmp_path / "file" / "s.npz"], "a file stands where the folder")):
        result = run_cli("sample", "--checkpoint", tmp_path / "missing.pt", "--out", tmp_path / "s.npz", *args)
        assert message in result.error


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_sample_command_refuses_cuda_graph_without_a_gpu(tmp_path):
    result = run_cli("sample", "--checkpoint", tmp_path / "c.pt", "--out", tmp_path / "s.npz", "--cuda-graph")
    assert result.error == "mpdit sample: error: --cuda-graph: CUDA graphs need a CUDA GPU; none is visible here"
