"""Inception features of an image .npz, computed in batches (on the GPU when there is one) and
cached: the cache key is the file's content and the weights' content, so evaluating many
checkpoints against one reference computes the reference once.
"""
import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mpdit.evaluation.inception import file_digest
from mpdit.evaluation.metrics import RunningStatistics, Statistics, exact_float32
from mpdit.io.files import atomic_path
from mpdit.io.npz_images import ImageFileError, check_images_header

CACHE_ENV = "MPDIT_CACHE_DIR"
CACHE_VERSION = 1  # bump when the features change meaning


@dataclass
class Features:
    """What the metrics need of one image file: pool_3 features of every image (FID, precision,
    recall), the statistics of the spatial features (sFID) and the 1008-way logits (IS)."""

    pool: np.ndarray  # (N, 2048) float32
    spatial: Statistics  # over (N, 2023)
    logits: np.ndarray  # (N, 1008) float32

    def __len__(self):
        return len(self.pool)


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "mpdit", "features")


def compute_features(path: str, network, batch_size: int = 64, device="cpu", progress: bool = True) -> Features:
    """Runs `network` (InceptionV3) over arr_0 of `path` in batches."""
    reader = check_images_header(path)
    pool, logits, spatial = [], [], RunningStatistics()
    bar = tqdm(total=len(reader), unit="img", desc=f"features {os.path.basename(path)}", disable=not progress)
    with torch.no_grad(), exact_float32():
        for chunk in reader.chunks(batch_size):
            images = torch.from_numpy(chunk.copy()).to(device).permute(0, 3, 1, 2)
            images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images  # grey: R = G = B
            out = network(images)
            pool.append(out["pool"].float().cpu().numpy())
            logits.append(out["logits"].float().cpu().numpy())
            spatial.add(out["spatial"].float())
            bar.update(len(chunk))
    bar.close()
    if len(reader) < 2:
        raise ImageFileError(f"{path}: {len(reader)} image; the statistics need at least 2")
    return Features(np.concatenate(pool), spatial.result(), np.concatenate(logits))


def _cache_path(path: str, weights: str) -> str:
    key = f"{file_digest(path)[:24]}-{file_digest(weights)[:12]}-v{CACHE_VERSION}"
    return os.path.join(cache_dir(), f"{key}.npz")


def load_features(path: str, network, weights: str, batch_size: int = 64, device="cpu", progress: bool = True,
                  cache: bool = True) -> tuple:
    """(Features of `path`, whether they came from the cache)."""
    cached = _cache_path(path, weights) if cache else None
    if cached and os.path.isfile(cached):
        with contextlib.suppress(OSError, ValueError, KeyError):  # an unreadable cache entry is recomputed
            with np.load(cached) as saved:
                return Features(saved["pool"], Statistics(saved["spatial_mu"], saved["spatial_sigma"]),
                                saved["logits"]), True
    features = compute_features(path, network, batch_size, device, progress)
    if cached:
        with contextlib.suppress(OSError, ValueError):  # a cache that cannot be written costs time, not results
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            with atomic_path(cached) as tmp, open(tmp, "wb") as f:
                np.savez(f, pool=features.pool, logits=features.logits, spatial_mu=features.spatial.mu,
                         spatial_sigma=features.spatial.sigma)
    return features, False
