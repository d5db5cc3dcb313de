"""The ADM evaluator's metrics, each against a NumPy / SciPy re-statement of its definition
written here (guided-diffusion's evaluations/evaluator.py), on cases with known answers."""
import numpy as np
import pytest
import torch
from scipy import linalg

from mpdit.evaluation.metrics import (
    RunningStatistics,
    Statistics,
    frechet_distance,
    inception_score,
    precision_recall,
    statistics,
)

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


@pytest.mark.parametrize("samples", [600, 90], ids=["full-rank", "rank-deficient"])
def test_the_trace_from_eigenvalues_agrees_with_sqrtm(samples):
    """The default root (eigenvalues of S_a^1/2 S_b S_a^1/2) against the evaluator's sqrtm, at 256
    dimensions: from more samples than dimensions, and from fewer (both covariances singular, as
    with fewer than 2048 images)."""
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(256, 256)) / 16
    sa = statistics(rng.normal(size=(samples, 256)) @ mixing)
    sb = statistics(rng.normal(size=(samples, 256)) @ (mixing + rng.normal(size=(256, 256)) / 64) + 0.1)
    by_sqrtm = frechet_distance(sa, sb, root="sqrtm")
    assert frechet_distance(sa, sb) == pytest.approx(by_sqrtm, rel=1e-6)
    assert frechet_distance(sa, sb, root="eigenvalues") == frechet_distance(sa, sb)
    assert frechet_distance(sa, sa) == pytest.approx(0, abs=1e-6 * np.trace(sa.sigma))
    with pytest.raises(ValueError, match="root='svd': expected one of eigenvalues, sqrtm"):
        frechet_distance(sa, sb, root="svd")


def test_the_sqrtm_check_retries_a_non_finite_root_with_an_offset_as_the_evaluator(monkeypatch):
    """OpenBLAS's sqrtm has returned NaN on a product of covariances (LightningDiT#97): the check
    path retries with 1e-6 on the diagonals, as the evaluator does, and still agrees."""
    import mpdit.evaluation.metrics as metrics

    rng = np.random.default_rng(5)
    sa, sb = statistics(rng.normal(size=(40, 8))), statistics(rng.normal(size=(40, 8)) + 0.3)
    calls, sqrtm = [], metrics.linalg.sqrtm
    monkeypatch.setattr(metrics.linalg, "sqrtm",
                        lambda m: calls.append(m) or (np.full_like(m, np.nan) if len(calls) == 1 else sqrtm(m)))
    assert frechet_distance(sa, sb, root="sqrtm") == pytest.approx(frechet_distance(sa, sb), rel=1e-5)
    assert len(calls) == 2 and np.allclose(calls[1], (sa.sigma + 1e-6 * np.eye(8)) @ (sb.sigma + 1e-6 * np.eye(8)))
    with pytest.raises(ValueError, match="statistics b: non-finite values"):
        frechet_distance(sa, Statistics(sb.mu, np.full_like(sb.sigma, np.nan)))


def test_precision_recall_distances_run_without_tf32_whatever_the_process_chose(monkeypatch):
    """`mpdit` turns TF32 on for training; the distances must still be float32 products."""
    import mpdit.evaluation.metrics as metrics

    seen, distances = [], metrics._squared_distances
    monkeypatch.setattr(metrics, "_squared_distances",
                        lambda *a: seen.append(torch.backends.cuda.matmul.allow_tf32) or distances(*a))
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        rng = np.random.default_rng(4)
        precision_recall(rng.normal(size=(20, 5)), rng.normal(size=(20, 5)), device="cpu")
        assert torch.backends.cuda.matmul.allow_tf32 is True  # put back afterwards
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    assert seen and not any(seen)


def test_statistics_of_float32_features_accumulate_in_float64():
    """Features arrive in float32; far from zero (mean 1000, spread 0.01) a float32 accumulation
    would lose the covariance to cancellation."""
    x = (np.random.default_rng(6).normal(size=(2000, 4)) * 0.01 + 1000).astype(np.float32)
    expected = np.cov(x.astype(np.float64), rowvar=False)
    running = RunningStatistics()
    for chunk in np.array_split(x, 7):
        running.add(torch.from_numpy(chunk))
    assert np.allclose(running.result().sigma, expected, rtol=1e-9, atol=0)
    assert np.allclose(statistics(x).sigma, expected, rtol=1e-12, atol=0)


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
