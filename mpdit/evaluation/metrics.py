"""The ADM evaluator's metrics on features: Fréchet distance (FID, sFID), Inception Score, and
improved precision / recall (Kynkäänniemi et al. 2019), each as the evaluator defines it.

Known differences from the evaluator, all below its own run-to-run noise on a GPU: softmax and
KL in float64 (the evaluator: float32), pairwise distances in float32 (the evaluator tries
float16 first), which moves precision / recall by about 0.1-0.3 points on ImageNet, and the
trace of the Fréchet distance's matrix root from eigenvalues (frechet_distance).

Everything here runs in exact float32 or float64, whatever the process chose: `mpdit` turns TF32
on for training, and a TF32 matrix product keeps 10 bits of mantissa, enough to move a distance
across a neighbourhood's radius.
"""
import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg

IS_SPLIT = 5000  # contiguous splits of this many samples, the last one possibly short
PR_NEIGHBOURS = 3  # k: a point's radius is the distance to its 3rd nearest neighbour (itself excluded)
PR_BLOCK = 10000  # rows and columns of one block of pairwise distances


@contextlib.contextmanager
def exact_float32():
    """TF32 off for the duration (the CLI turns it on for training): products in full float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass
class Statistics:
    """Mean and covariance of features (numpy float64)."""

    mu: np.ndarray
    sigma: np.ndarray


def statistics(features: np.ndarray) -> Statistics:
    """Mean and unbiased covariance of (N, D) features (np.cov over rows)."""
    features = np.asarray(features, dtype=np.float64)
    return Statistics(features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False)))


class RunningStatistics:
    """Mean and covariance of features that arrive in batches (Chan's pairwise update, float64):
    the same as `statistics` over all of them, without holding them."""

    def __init__(self):
        self.count, self.mean, self.scatter = 0, None, None

    def add(self, batch) -> None:
        batch = torch.as_tensor(batch).to(torch.float64)
        n, mean = batch.shape[0], batch.mean(dim=0)
        centred = batch - mean
        scatter = centred.T @ centred
        if self.count == 0:
            self.count, self.mean, self.scatter = n, mean, scatter
            return
        delta, total = mean - self.mean, self.count + n
        self.scatter = self.scatter + scatter + torch.outer(delta, delta) * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total

    def result(self) -> Statistics:
        if self.count < 2:
            raise ValueError(f"features: {self.count} sample(s); a covariance needs at least 2")
        return Statistics(self.mean.cpu().numpy(), (self.scatter / (self.count - 1)).cpu().numpy())


FRECHET_ROOTS = ("eigenvalues", "sqrtm")


def frechet_distance(a: Statistics, b: Statistics, eps: float = 1e-6, root: str = "eigenvalues") -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    root="eigenvalues" (the default): the trace of the root is the sum of the square roots of the
    eigenvalues of S_a^(1/2) S_b S_a^(1/2), a symmetric matrix with the same eigenvalues as
    S_a S_b; two symmetric eigendecompositions in float64, a second each at 2048 x 2048 where
    scipy's sqrtm of the product takes tens of seconds. Eigenvalues below zero by rounding count
    as zero, so a rank-deficient covariance (fewer samples than dimensions) needs no offset.
    root="sqrtm": the ADM evaluator's way, kept as the check: scipy's sqrtm of the product; a
    non-finite root is retried with eps on the diagonals, and an imaginary part that is not
    negligible is an error."""
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise ValueError(f"statistics of different dimensions: {a.mu.shape} and {b.mu.shape}")
    if root not in FRECHET_ROOTS:
        raise ValueError(f"root={root!r}: expected one of {', '.join(FRECHET_ROOTS)}")
    for name, stats in (("a", a), ("b", b)):
        if not (np.isfinite(stats.mu).all() and np.isfinite(stats.sigma).all()):
            raise ValueError(f"statistics {name}: non-finite values in the mean or covariance (non-finite features)")
    diff = a.mu - b.mu
    trace = _trace_of_root_by_eigenvalues(a.sigma, b.sigma) if root == "eigenvalues" else \
        _trace_of_root_by_sqrtm(a.sigma, b.sigma, eps)
    return float(diff.dot(diff) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace)


def _trace_of_root_by_eigenvalues(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    values, vectors = np.linalg.eigh(sigma_a)
    half = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T  # S_a^(1/2)
    inner = half @ sigma_b @ half
    return float(np.sqrt(np.linalg.eigvalsh((inner + inner.T) / 2).clip(min=0)).sum())


def _trace_of_root_by_sqrtm(sigma_a: np.ndarray, sigma_b: np.ndarray, eps: float) -> float:
    with warnings.catch_warnings():  # a singular product is handled below, not worth a warning
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(sigma_a.dot(sigma_b))
        if not np.isfinite(root).all():
            offset = np.eye(sigma_a.shape[0]) * eps
            root = linalg.sqrtm((sigma_a + offset).dot(sigma_b + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.max(np.abs(root.imag))} in the matrix root")
        root = root.real
    return float(np.trace(root))


def inception_score(logits, split_size: int = IS_SPLIT) -> tuple:
    """(score, number of splits): the mean over contiguous splits of split_size (the last one
    possibly shorter, weighted like the others) of exp(mean KL(p(y|x) || p(y)))."""
    probabilities = torch.softmax(torch.as_tensor(logits).to(torch.float64), dim=1).numpy()
    scores = []
    for start in range(0, len(probabilities), split_size):
        part = probabilities[start:start + split_size]
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), len(scores)


def _squared_distances(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """|r|^2 - 2 r.c + |c|^2, clamped at 0 (the evaluator's formula)."""
    d = (rows * rows).sum(1, keepdim=True) - 2 * rows @ cols.T + (cols * cols).sum(1)[None]
    return d.clamp_min(0)


def _radii(features: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Squared distance of each point to its k-th nearest neighbour in its own set (itself, at
    distance 0, is the 0-th)."""
    radii = []
    for start in range(0, len(features), block):
        rows = features[start:start + block]
        d = torch.cat([_squared_distances(rows, features[c:c + block]) for c in range(0, len(features), block)], 1)
        radii.append(torch.kthvalue(d, k + 1, dim=1).values)
    return torch.cat(radii)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> torch.Tensor:
    """For each point: whether it lies within any centre's sphere."""
    hits = []
    for start in range(0, len(points), block):
        rows, hit = points[start:start + block], None
        for c in range(0, len(centres), block):
            inside = (_squared_distances(rows, centres[c:c + block]) <= radii[c:c + block][None]).any(1)
            hit = inside if hit is None else hit | inside
        hits.append(hit)
    return torch.cat(hits)


def precision_recall(reference, samples, k: int = PR_NEIGHBOURS, block: int = PR_BLOCK, device=None) -> tuple:
    """(precision, recall): the share of samples inside some reference point's k-NN sphere, and
    the share of reference points inside some sample's k-NN sphere (float32 distances)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    reference = torch.as_tensor(np.asarray(reference), dtype=torch.float32, device=device)
    samples = torch.as_tensor(np.asarray(samples), dtype=torch.float32, device=device)
    for name, features in (("reference", reference), ("samples", samples)):
        if len(features) <= k:
            raise ValueError(f"{name}: {len(features)} feature rows; precision / recall with k={k} needs more than {k}")
    with exact_float32():
        precision = _inside(samples, reference, _radii(reference, k, block), block).double().mean().item()
        recall = _inside(reference, samples, _radii(samples, k, block), block).double().mean().item()
    return precision, recall
