"""`mpdit eval` from the command line: each bad input is one line on stderr and exit 2, before
any network is loaded; a reference batch made from one's own images."""
import json

import numpy as np
import pytest
import torch

from helpers.cli import run_cli
from mpdit.evaluation.inception import WEIGHTS_FILE, InceptionV3


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.npz"
    np.savez(path, arr_0=np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    return str(path)


def bad_file(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("case, expected", [
    ("not_npz", "expected an .npz file"),
    ("not_a_zip", "not an .npz file"),
    ("no_arr_0", "no array 'arr_0' (it holds images)"),
    ("float", "float32 images; expected uint8"),
    ("nan", "float32 images with NaN values"),
    ("out_of_range", "int16 images with values in [-3, 300], out of [0, 255]"),
    ("nchw", "looks like NCHW (N, C, H, W); expected NHWC"),
    ("four_channels", "4 channels (shape (6, 16, 16, 4)); expected 1 or 3"),
    ("flat", "expected images N x H x W x C"),
    ("truncated", "not an .npz file"),  # its zip directory, at the end, is gone
])
def test_a_bad_sample_file_is_one_line_and_exit_2(case, expected, good, tmp_path, monkeypatch):
    monkeypatch.setattr("mpdit.evaluation.evaluator.load_inception", lambda *a: pytest.fail("loaded the network"))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 16, 16, 3)).astype(np.uint8)
    if case == "not_npz":
        path = str(tmp_path / "samples.npy")
        np.save(path, images)
    elif case == "not_a_zip":
        path = str(tmp_path / "samples.npz")
        (tmp_path / "samples.npz").write_bytes(b"hello")
    elif case == "no_arr_0":
        path = bad_file(tmp_path, "s.npz", images=images)
    elif case == "float":
        path = bad_file(tmp_path, "s.npz", arr_0=images.astype(np.float32) / 255)
    elif case == "nan":
        broken = images.astype(np.float32)
        broken[0, 0, 0, 0] = np.nan
        path = bad_file(tmp_path, "s.npz", arr_0=broken)
    elif case == "out_of_range":
        wide = images.astype(np.int16)
        wide[0, 0, 0, :2] = (-3, 300)
        path = bad_file(tmp_path, "s.npz", arr_0=wide)
    elif case == "nchw":
        path = bad_file(tmp_path, "s.npz", arr_0=images.transpose(0, 3, 1, 2).copy())
    elif case == "four_channels":
        path = bad_file(tmp_path, "s.npz", arr_0=np.concatenate([images, images[..., :1]], -1))
    elif case == "flat":
        path = bad_file(tmp_path, "s.npz", arr_0=images.reshape(6, -1))
    else:  # a killed writer: the zip's member cut short
        whole = tmp_path / "whole.npz"
        np.savez(whole, arr_0=images)
        path = str(tmp_path / "s.npz")
        (tmp_path / "s.npz").write_bytes(whole.read_bytes()[:-900])
    error = run_cli("eval", good, path, "--no-progress").error
    assert error.startswith("mpdit eval: error: ") and expected in error


def test_wrong_numbers_of_files_and_options_are_one_line(good, tmp_path):
    for argv, expected in [(["eval", good], "expected REF.npz SAMPLES.npz, got 1 file"),
                           (["eval", good, good, "--out", str(tmp_path / "x.npz")], "only with --make-ref"),
                           (["eval", good, good, "--json", str(tmp_path / "m.txt")], "expected a path ending in .json"),
                           (["eval", "--features", "digits", good, good], "expected one SAMPLES.npz"),
                           (["eval", "--make-ref", good], "needs --out REF.npz")]:
        assert expected in run_cli(*argv).error, argv


def test_a_reference_with_mis_shaped_statistics_is_named(good, tmp_path):
    ref = bad_file(tmp_path, "ref.npz", arr_0=np.zeros((6, 16, 16, 3), np.uint8), mu=np.zeros(2048),
                   sigma=np.eye(2047))
    assert "mu / sigma of shape (2048,) / (2047, 2047)" in run_cli("eval", ref, good, "--no-progress").error


def test_make_ref_writes_the_adm_layout_with_a_fixed_subset(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    weights = tmp_path / WEIGHTS_FILE
    network = InceptionV3()
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(network.state_dict(), weights)
    folder = tmp_path / "images" / "class_a"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    pictures = [rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8) for i in range(7)]  # varied sizes
    for i, picture in enumerate(pictures):
        Image.fromarray(picture).save(folder / f"{i}.png")
    out = tmp_path / "ref.npz"
    made = run_cli("eval", "--make-ref", tmp_path / "images", "--out", out, "--image-size", "16", "--ref-images", "5",
                   "--inception-weights", weights, "--no-progress", "--device", "cpu").ok()
    assert json.loads(made.out) == {"out": str(out), "images": 7, "arr_0": 5, "resolution": [16, 16]}
    with np.load(out) as ref:
        assert sorted(ref.keys()) == ["arr_0", "mu", "mu_s", "sigma", "sigma_s"]
        assert ref["arr_0"].shape == (5, 16, 16, 3) and ref["arr_0"].dtype == np.uint8
        assert ref["mu"].shape == (2048,) and ref["sigma"].shape == (2048, 2048)
        assert ref["mu_s"].shape == (2023,) and ref["sigma_s"].shape == (2023, 2023)
        # statistics over all 7 images, not the subset
        from mpdit.evaluation.reference import centre_crop

        crops = np.stack([centre_crop(Image.fromarray(p), 16) for p in pictures])
        with torch.no_grad():
            pool = network.eval()(torch.from_numpy(crops).permute(0, 3, 1, 2))["pool"].double().numpy()
        np.testing.assert_allclose(ref["mu"], pool.mean(0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ref["sigma"], np.cov(pool, rowvar=False), rtol=1e-4, atol=1e-9)
        kept = {crop.tobytes() for crop in ref["arr_0"]}
        assert kept <= {crop.tobytes() for crop in crops} and len(kept) == 5
    # fixed: the same subset again
    again = tmp_path / "again.npz"
    run_cli("eval", "--make-ref", tmp_path / "images", "--out", again, "--image-size", "16", "--ref-images", "5",
            "--inception-weights", weights, "--no-progress", "--device", "cpu").ok()
    with np.load(out) as a, np.load(again) as b:
        assert np.array_equal(a["arr_0"], b["arr_0"])
    # different sizes without --image-size: named
    result = run_cli("eval", "--make-ref", tmp_path / "images", "--out", tmp_path / "x.npz", "--inception-weights",
                     weights, "--no-progress", "--device", "cpu")
    assert "pass --image-size" in result.error
