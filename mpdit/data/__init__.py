"""Data: the datasets the engine trains on (datasets: scikit-learn's digits, latent shards) and
the extraction of latent shards from image folders (latents). Below training and evaluation,
which both read it."""
from mpdit.data.datasets import DigitsDataset, LatentShards, data_shape, latents_info, open_dataset

__all__ = ["DigitsDataset", "LatentShards", "data_shape", "latents_info", "open_dataset"]
