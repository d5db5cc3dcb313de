"""Training data: scikit-learn's bundled digits, or a folder of precomputed latent shards.

A shard is a safetensors file with `latents` (N, C, H, W) float and `labels` (N,) int64.
Every source is a map-style dataset of (image or latent, label); the order of a run comes
from ResumableSampler, whose position is saved in checkpoints.
"""
import glob
import os

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler


class DigitsDataset(Dataset):
    """The 1,797 8 x 8 handwritten digits of scikit-learn (10 classes), one channel, scaled
    bilinearly to `size` x `size` and to [-1, 1]: trainable on a laptop CPU, no download."""

    num_classes = 10

    def __init__(self, size: int = 16):
        if size not in (8, 16, 32):
            raise ValueError(f"size={size}: expected 8, 16 or 32 for the digits dataset")
        from sklearn.datasets import load_digits  # ships the data inside the package

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
        if size != 8:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        self.images = images.clamp(0, 1) * 2 - 1
        self.labels = torch.tensor(digits.target, dtype=torch.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


class LatentShards(Dataset):
    """All shards of a folder, checked once: same latent shape, labels in [0, num_classes)."""

    def __init__(self, folder: str, num_classes: int = 1000):
        from safetensors.torch import load_file

        if not os.path.isdir(folder):
            raise ValueError(f"dataset={folder!r}: no such folder (expected 'digits' or a folder of latent shards)")
        paths = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
        if not paths:
            raise ValueError(f"dataset={folder!r}: no *.safetensors shards in the folder")
        latents, labels = [], []
        for path in paths:
            shard = load_file(path)
            if "latents" not in shard or "labels" not in shard:
                raise ValueError(f"dataset shard {path!r}: expected tensors 'latents' and 'labels', "
                                 f"got {sorted(shard)}")
            lat, lab = shard["latents"], shard["labels"]
            if lat.dim() != 4 or lab.shape != (lat.shape[0],):
                raise ValueError(f"dataset shard {path!r}: latents {tuple(lat.shape)} and labels {tuple(lab.shape)}; "
                                 "expected (N, C, H, W) and (N,)")
            if latents and lat.shape[1:] != latents[0].shape[1:]:
                raise ValueError(f"dataset shard {path!r}: latent shape {tuple(lat.shape[1:])} differs from "
                                 f"{tuple(latents[0].shape[1:])} in {paths[0]!r}")
            if lab.numel() and (lab.min() < 0 or lab.max() >= num_classes):
                raise ValueError(f"dataset shard {path!r}: labels in [{lab.min().item()}, {lab.max().item()}], "
                                 f"expected [0, {num_classes - 1}]")
            latents.append(lat.float())
            labels.append(lab.long())
        self.latents = torch.cat(latents)
        self.labels = torch.cat(labels)
        self.num_classes = num_classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.latents[index], self.labels[index]


def latents_info(folder: str):
    """The folder's latents.json (VAE, normalisation, classes) written by extract-latents, or None."""
    path = os.path.join(folder, "latents.json")
    if not os.path.isfile(path):
        return None
    import json

    with open(path) as f:
        return json.load(f)


def open_dataset(name: str, image_size: int = 16) -> Dataset:
    if name == "digits":
        return DigitsDataset(image_size)
    info = latents_info(name) if os.path.isdir(name) else None
    return LatentShards(name, info["num_classes"] if info else 1000)


class ResumableSampler(Sampler):
    """This rank's indices, epoch after epoch: a seeded permutation per epoch, cut to a
    multiple of world * batch (every rank sees as many batches), rank r taking every
    world-th batch. It starts after `start_batch` batches, so a run resumes on the exact
    next batch; the trainer counts consumed batches itself (DataLoader workers prefetch)."""

    def __init__(self, size: int, batch: int, rank: int = 0, world: int = 1, seed: int = 0, start_batch: int = 0):
        if size < batch * world:
            raise ValueError(f"the dataset's {size} items are fewer than one global batch of {batch * world}")
        self.size, self.batch, self.rank, self.world, self.seed = size, batch, rank, world, seed
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch * self.world)

    def __iter__(self):
        epoch, taken = divmod(self.start_batch, self.batches_per_epoch)
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            for batch_index in range(taken, self.batches_per_epoch):
                first = (batch_index * self.world + self.rank) * self.batch
                yield from order[first:first + self.batch].tolist()
            epoch, taken = epoch + 1, 0

    def __len__(self):  # an endless stream; DataLoader only needs a number for its bookkeeping
        return self.batches_per_epoch * self.batch
