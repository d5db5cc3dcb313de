"""`mpdit eval`: Inception Score, FID, sFID, precision and recall of a sample batch against a
reference batch, as the ADM evaluator (guided-diffusion's evaluations/evaluator.py) computes them.

FID against the reference's stored `mu` / `sigma` (statistics of the whole dataset) when it has
them, else against its images; sFID likewise with `mu_s` / `sigma_s`; precision and recall
between the reference's images (arr_0) and all samples; IS over the samples alone.
"""
import numpy as np
import torch

from mpdit.evaluation.features import load_features
from mpdit.evaluation.inception import find_weights, load_inception
from mpdit.evaluation.metrics import (
    IS_SPLIT,
    Statistics,
    frechet_distance,
    inception_score,
    precision_recall,
    statistics,
)
from mpdit.io.npz_images import ImageFileError, array_keys, check_images_header

METRICS = ("inception_score", "fid", "sfid", "precision", "recall")
FRECHET_ROOT_USED = "eigenvalues"  # metrics.frechet_distance's default; "sqrtm" is its check
LABELS = {"inception_score": "Inception Score", "fid": "FID", "sfid": "sFID", "precision": "Precision",
          "recall": "Recall"}


def _stored_statistics(path: str, mean: str, covariance: str):
    """Statistics stored in a reference file under `mean` / `covariance`, or None."""
    keys = array_keys(path)
    if mean not in keys or covariance not in keys:
        return None
    with np.load(path) as saved:
        return Statistics(saved[mean].astype(np.float64), saved[covariance].astype(np.float64))


def _check_statistics(path: str, stored: Statistics, dimension: int, name: str) -> None:
    if stored is not None and (stored.mu.shape != (dimension,) or stored.sigma.shape != (dimension, dimension)):
        raise ImageFileError(f"{path}: {name} of shape {stored.mu.shape} / {stored.sigma.shape}; expected "
                             f"({dimension},) / ({dimension}, {dimension})")


def evaluate(ref: str, samples: str, inception_weights: str = None, batch_size: int = 64, device=None,
             progress: bool = True, cache: bool = True, warn=print) -> dict:
    """The five metrics of `samples` (an .npz, arr_0 uint8 N x H x W x 3) against `ref` (an ADM
    reference batch: arr_0 and, usually, mu / sigma / mu_s / sigma_s). Returns the metrics (None
    where not computed), `used` (what each figure was computed from) and `notes`. `warn` gets
    each note as it happens."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive integer")
    sample_reader, ref_reader = check_images_header(samples), check_images_header(ref)
    notes = []

    def note(text):
        notes.append(text)
        warn(text)

    for path, reader in ((samples, sample_reader), (ref, ref_reader)):
        if reader.shape[-1] == 1:
            note(f"{path} holds grey images: each fed to the Inception as R = G = B")

    if sample_reader.shape[1:3] != ref_reader.shape[1:3]:
        note(f"samples are {sample_reader.shape[1]}x{sample_reader.shape[2]}, the reference "
             f"{ref_reader.shape[1]}x{ref_reader.shape[2]}: both are resized to 299x299, but the figures are not "
             "those of a same-resolution evaluation")
    ref_pool_stats = _stored_statistics(ref, "mu", "sigma")
    ref_spatial_stats = _stored_statistics(ref, "mu_s", "sigma_s")
    _check_statistics(ref, ref_pool_stats, 2048, "mu / sigma")
    _check_statistics(ref, ref_spatial_stats, 2023, "mu_s / sigma_s")

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    weights = find_weights(inception_weights)
    network = load_inception(weights, device)
    sample_features, _ = load_features(samples, network, weights, batch_size, device, progress, cache)
    ref_features, _ = load_features(ref, network, weights, batch_size, device, progress, cache)
    n, m = len(sample_features), len(ref_features)

    result, used = dict.fromkeys(METRICS), {}
    if not network.has_logits:
        note(f"Inception Score not computed: {weights} ({network.weight_kind}) holds the features only, no logits "
             "head; FID, sFID, precision and recall are computed")
    elif n >= IS_SPLIT:
        result["inception_score"], splits = inception_score(sample_features.logits)
        used["inception_score"] = f"{n} samples, {splits} contiguous splits of up to {IS_SPLIT}"
    else:
        note(f"Inception Score not computed: {n} samples, fewer than one split of {IS_SPLIT}; FID, sFID, precision "
             "and recall are computed (on few samples FID is biased upwards)")
    if ref_pool_stats is None:
        note(f"{ref} stores no mu / sigma: FID against the statistics of its {m} images")
        ref_pool_stats, fid_source = statistics(ref_features.pool), f"{m} reference images"
    else:
        fid_source = "the reference's stored mu / sigma"
    if n <= 2048:
        note(f"{n} samples, no more than the 2048 pool_3 dimensions: their covariance is singular (rank <= {n - 1}); "
             "the root's trace from eigenvalues needs no offset for it (the ADM evaluator adds 1e-6 to the "
             "diagonals when its sqrtm fails), but FID from so few samples is biased upwards")
    result["fid"] = frechet_distance(statistics(sample_features.pool), ref_pool_stats)
    used["fid"] = f"{n} samples against {fid_source}"
    if ref_spatial_stats is not None:
        result["sfid"] = frechet_distance(sample_features.spatial, ref_spatial_stats)
        used["sfid"] = f"{n} samples against the reference's stored mu_s / sigma_s"
    elif "mu" not in array_keys(ref):  # images only: both statistics from them, as the evaluator does
        result["sfid"] = frechet_distance(sample_features.spatial, ref_features.spatial)
        used["sfid"] = f"{n} samples against {m} reference images"
    else:
        note(f"sFID not computed: {ref} stores mu / sigma but no mu_s / sigma_s")
    for key in ("fid", "sfid"):
        if key in used:
            used[key] += f"; the root's trace from {FRECHET_ROOT_USED}"
    result["precision"], result["recall"] = precision_recall(ref_features.pool, sample_features.pool, device=device)
    used["precision"] = used["recall"] = f"{n} samples and {m} reference images, k=3"
    return {**result, "num_samples": n, "num_reference": m, "used": used, "notes": notes,
            "frechet_root": FRECHET_ROOT_USED, "inception_weights": {"path": weights, "kind": network.weight_kind},
            "ref": ref, "samples": samples}


def format_result(result: dict) -> str:
    """The evaluator's five lines, each with what it was computed from."""
    lines = []
    for key in METRICS:
        value = result[key]
        shown = "not computed" if value is None else f"{value:.4f}"
        lines.append(f"{LABELS[key]}: {shown}" + (f"  ({result['used'][key]})" if key in result["used"] else ""))
    return "\n".join(lines)
