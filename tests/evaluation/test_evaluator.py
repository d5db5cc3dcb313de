"""evaluate(): which statistics each figure uses and what it says it skipped, and the feature cache
(keyed by the file's content and the weights'), on a stand-in network."""
import numpy as np
import pytest
import torch

from helpers.fake_inception import FakeInception
from mpdit.evaluation import evaluate, evaluator


@pytest.mark.slow
def test_evaluate_uses_the_references_stored_mu_sigma_and_says_what_it_skips(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluator, "load_inception", lambda path, device: FakeInception())
    monkeypatch.setenv("MPDIT_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"stand-in")
    rng = np.random.default_rng(6)
    samples = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    ref_images = rng.integers(0, 256, (20, 24, 24, 3), dtype=np.uint8)
    with torch.no_grad():
        pool = FakeInception()(torch.from_numpy(samples).permute(0, 3, 1, 2))["pool"].double().numpy()
    # stored statistics unlike the images': same covariance as the samples, a shifted mean, so that
    # FID against them is exactly |shift|^2 and FID against the images would be something else
    shift = rng.normal(size=2048) * 0.1
    np.savez(tmp_path / "ref.npz", arr_0=ref_images, mu=pool.mean(0) + shift, sigma=np.cov(pool, rowvar=False))
    np.savez(tmp_path / "samples.npz", arr_0=samples)
    notes = []
    result = evaluate(str(tmp_path / "ref.npz"), str(tmp_path / "samples.npz"), inception_weights=str(weights),
                      device="cpu", progress=False, warn=notes.append)
    assert result["fid"] == pytest.approx(shift @ shift, rel=1e-3)
    assert result["sfid"] is None and any("no mu_s / sigma_s" in n for n in notes)
    assert result["inception_score"] is None and any("fewer than one split of 5000" in n for n in notes)
    assert any("16x16" in n and "24x24" in n for n in notes)  # resolutions differ: named
    assert result["used"]["fid"] == ("24 samples against the reference's stored mu / sigma; the root's trace from "
                                     "eigenvalues")
    assert result["frechet_root"] == "eigenvalues"
    assert result["num_samples"] == 24 and result["num_reference"] == 20
    assert 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1


def test_features_are_cached_by_file_content_and_weights(tmp_path, monkeypatch):
    from mpdit.evaluation.features import load_features

    monkeypatch.setenv("MPDIT_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    class Counting(FakeInception):
        def forward(self, images):
            calls.append(len(images))
            return super().forward(images)

    network, weights, other_weights = Counting(), tmp_path / "w.pth", tmp_path / "v.pth"
    weights.write_bytes(b"weights one")
    other_weights.write_bytes(b"weights two")
    images = tmp_path / "images.npz"
    np.savez(images, arr_0=np.random.default_rng(7).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8))
    first, cached = load_features(str(images), network, str(weights), batch_size=2, progress=False)
    assert not cached and calls == [2, 2, 1]
    again, cached = load_features(str(images), network, str(weights), batch_size=2, progress=False)
    assert cached and calls == [2, 2, 1]  # not run again
    assert np.array_equal(first.pool, again.pool) and np.array_equal(first.spatial.sigma, again.spatial.sigma)
    load_features(str(images), network, str(other_weights), progress=False)  # other weights: computed
    np.savez(images, arr_0=np.random.default_rng(8).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8))
    changed, cached = load_features(str(images), network, str(weights), progress=False)  # other content
    assert not cached and len(calls) == 5 and not np.array_equal(changed.pool, first.pool)
    load_features(str(images), network, str(weights), progress=False, cache=False)
    assert len(calls) == 6
