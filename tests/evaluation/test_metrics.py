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
