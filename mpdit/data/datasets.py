"""The datasets: scikit-learn's bundled digits (pixels, no download), or a folder of latent
shards written by `mpdit extract-latents` (mpdit.data.latents).

A shard is a safetensors file with `latents` (N, C, H, W) float and `labels` (N,) int64.
Every source is a map-style dataset of (image or latent, label); the training order comes from
mpdit.training.data.ResumableSampler.
"""
import glob
import os

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


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
    """All shards of a folder, checked once when opened, each problem naming its shard: readable,
    floating-point square latents of one shape (latents.json's, where it records one), all finite;
    integer labels in [0, num_classes)."""

    def __init__(self, folder: str, num_classes: int = 1000, latent_shape=None):
        if not os.path.isdir(folder):
            raise ValueError(f"dataset={folder!r}: no such folder (expected 'digits' or a folder of latent shards)")
        paths = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
        if not paths:
            raise ValueError(f"dataset={folder!r}: no *.safetensors shards in the folder")
        latents, labels = [], []
        expected = tuple(latent_shape) if latent_shape else None
        for path in paths:
            lat, lab = _read_shard(path)
            if expected is None:
                expected, first = tuple(lat.shape[1:]), path
            elif tuple(lat.shape[1:]) != expected:
                source = f"{first!r}" if latent_shape is None else "latents.json"
                raise ValueError(f"dataset shard {path!r}: latent shape {tuple(lat.shape[1:])} differs from "
                                 f"{expected} in {source}")
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


def _read_shard(path: str) -> tuple:
    """(latents, labels) of one shard, or a ValueError naming it and what is wrong."""
    from safetensors.torch import load_file

    try:
        shard = load_file(path)
    except Exception as error:  # truncated, random bytes, not safetensors
        raise ValueError(f"dataset shard {path!r}: unreadable as safetensors ({type(error).__name__}); "
                         "re-extract it or move it out of the folder") from None
    if "latents" not in shard or "labels" not in shard:
        raise ValueError(f"dataset shard {path!r}: expected tensors 'latents' and 'labels', got {sorted(shard)}")
    lat, lab = shard["latents"], shard["labels"]
    if lat.dim() != 4 or lab.shape != (lat.shape[0],):
        raise ValueError(f"dataset shard {path!r}: latents {tuple(lat.shape)} and labels {tuple(lab.shape)}; "
                         "expected (N, C, H, W) and (N,)")
    if not lat.is_floating_point():
        raise ValueError(f"dataset shard {path!r}: latents of dtype {lat.dtype}; expected floating point")
    if lat.shape[-1] != lat.shape[-2]:
        raise ValueError(f"dataset shard {path!r}: latents {lat.shape[-2]} x {lat.shape[-1]}; the models take "
                         "square latents")
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise ValueError(f"dataset shard {path!r}: labels of dtype {lab.dtype}; expected integers (they would be "
                         "truncated)")
    finite = torch.isfinite(lat.reshape(lat.shape[0], -1)).all(dim=1)
    if not finite.all():
        bad = (~finite).nonzero().flatten()
        raise ValueError(f"dataset shard {path!r}: non-finite values in {len(bad)} of its {lat.shape[0]} latents "
                         f"(first: item {bad[0].item()})")
    return lat, lab


def latents_info(folder: str):
    """The folder's latents.json (VAE, normalisation, classes) written by extract-latents, or None."""
    path = os.path.join(folder, "latents.json")
    if not os.path.isfile(path):
        return None
    import json

    try:
        with open(path) as f:
            info = json.load(f)
    except ValueError as error:
        raise ValueError(f"dataset: {path} is not valid JSON ({error})") from None
    if not isinstance(info, dict) or not isinstance(info.get("num_classes"), int) or info["num_classes"] < 1:
        raise ValueError(f"dataset: {path} has no positive integer 'num_classes' (written by mpdit extract-latents)")
    return info


def open_dataset(name: str, image_size: int = 16) -> Dataset:
    if name == "digits":
        return DigitsDataset(image_size)
    info = latents_info(name) if os.path.isdir(name) else None
    if info is None:
        return LatentShards(name)
    return LatentShards(name, info["num_classes"], info.get("latent_shape"))


def data_shape(dataset: Dataset) -> dict:
    """The create_model fields a dataset dictates: in_channels, latent_size, num_classes."""
    image = dataset[0][0]
    return {"in_channels": image.shape[0], "latent_size": image.shape[-1], "num_classes": dataset.num_classes}
