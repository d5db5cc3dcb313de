"""The ADM evaluator's metrics, each against a NumPy / SciPy re-statement of its definition
written here (guided-diffusion's evaluations/evaluator.py), on cases with known answers."""
import numpy as np
import pytest
import torch
from scipy import linalg

from mpdit.evaluation import evaluate, evaluator
from mpdit.evaluation.metrics import (RunningStatistics, Statistics, frechet_distance, inception_score,
                                      precision_recall, statistics)



# ---- re-statements of the evaluator's definitions -------------------------------------------

def adm_frechet(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    root = linalg.sqrtm(sigma1 @ sigma2).real
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root)


def adm_inception_score(logits, split_size):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    scores = []
    for i in range(0, len(p), split_size):
        part = p[i:i + split_size]
        marginal = part.mean(axis=0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(marginal)), axis=1))))
    return np.mean(scores)


def adm_precision_recall(ref, samples, k=3):
    def radii(x):  # k-th nearest neighbour, itself excluded (index k of the sorted row with its 0)
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        return np.sort(d, axis=1)[:, k]

    def inside(points, centres, r):
        d = ((points[:, None] - centres[None]) ** 2).sum(-1)
        return (d <= r[None]).any(axis=1)

    return inside(samples, ref, radii(ref)).mean(), inside(ref, samples, radii(samples)).mean()


# ---- Fréchet distance -------------------------------------------------------------------------

def test_frechet_distance_of_two_gaussians_has_its_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    closed = ((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum()
    got = frechet_distance(Statistics(mu1, np.diag(var1)), Statistics(mu2, np.diag(var2)))
    assert got == pytest.approx(closed, rel=1e-10)


def test_frechet_distance_matches_the_evaluator_on_correlated_features():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + 0.5
    sa, sb = statistics(a), statistics(b)
    assert np.allclose(sa.sigma, np.cov(a, rowvar=False)) and np.allclose(sa.mu, a.mean(0))
    expected = adm_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(sa, sb) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(sa, sa) == pytest.approx(0, abs=1e-8)


def test_running_statistics_equal_np_cov_over_all_batches():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(103, 9)) * 3 + 10
    running = RunningStatistics()
    bounds = (0, 1, 40, 41, 90, 103)  # uneven batches, two of a single row
    for start, stop in zip(bounds, bounds[1:]):
        running.add(torch.from_numpy(x[start:stop]))
    result = running.result()
    assert np.allclose(result.mu, x.mean(0), rtol=1e-12)
    assert np.allclose(result.sigma, np.cov(x, rowvar=False), rtol=1e-10)


# ---- Inception Score ---------------------------------------------------------------------------

def test_inception_score_of_confident_balanced_predictions_is_the_class_count():
    logits = np.full((100, 1008), -50.0)
    logits[np.arange(100), np.arange(100) % 10] = 50.0  # certain, 10 classes equally often
    score, splits = inception_score(logits)
    assert splits == 1 and score == pytest.approx(10, rel=1e-9)
    assert inception_score(np.zeros((100, 1008)))[0] == pytest.approx(1, rel=1e-12)  # uncertain: 1


def test_inception_score_splits_are_contiguous_with_a_short_last_one():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3, size=(12001, 16))  # 5000 + 5000 + 2001: three splits
    score, splits = inception_score(logits)
    assert splits == 3
    assert score == pytest.approx(adm_inception_score(logits, 5000), rel=1e-10)
    shuffled = logits[rng.permutation(len(logits))]
    assert abs(inception_score(shuffled)[0] - score) > 1e-6  # the order matters: contiguous, not shuffled
    assert inception_score(logits[:10000])[1] == 2  # exactly 50,000-like: no short split


# ---- precision / recall ------------------------------------------------------------------------

def test_precision_and_recall_match_the_evaluator_with_k_3():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(60, 5))
    samples = rng.normal(size=(45, 5)) * 1.3 + 0.4
    expected = adm_precision_recall(ref, samples)
    got = precision_recall(ref, samples, block=16, device="cpu")  # blocks smaller than the sets
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < got[0] < 1 and 0 < got[1] < 1 and got[0] != got[1]


def test_identical_sets_score_one_and_far_apart_sets_score_zero():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(30, 8))
    assert precision_recall(ref, ref, device="cpu") == (1.0, 1.0)
    assert precision_recall(ref, ref + 1000, device="cpu") == (0.0, 0.0)


# ---- evaluate(): which statistics each figure uses ---------------------------------------------

class FakeInception(torch.nn.Module):
    """A cheap stand-in with the real network's outputs (features of the image content)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.pool = torch.randn(3 * 16, 2048, generator=g)
        self.spatial = torch.randn(3 * 16, 2023, generator=g)
        self.fc = torch.randn(2048, 1008, generator=g) / 40

    def forward(self, images):
        x = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)
        pool = torch.tanh(x @ self.pool)
        return {"pool": pool, "spatial": torch.tanh(x @ self.spatial), "logits": pool @ self.fc}


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
    assert result["used"]["fid"] == "24 samples against the reference's stored mu / sigma"
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
