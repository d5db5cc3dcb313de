"""The datasets: latent shards checked when opened (readable, float square latents of one shape,
finite, integer labels in range), latents.json read with its name, and the digits."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from mpdit.data import DigitsDataset, LatentShards, open_dataset


def shard(folder, name, latents, labels):
    os.makedirs(folder, exist_ok=True)
    save_file({"latents": latents, "labels": labels}, str(folder / name))
    return str(folder / name)


def good(folder):
    return shard(folder, "a.safetensors", torch.randn(3, 4, 8, 8), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("make, message", [
    (lambda f: shard(f, "b.safetensors", torch.randn(2, 4, 8, 8), torch.tensor([1.0, 2.7])),
     r"b.safetensors': labels of dtype torch.float32; expected integers \(they would be truncated\)"),
    (lambda f: shard(f, "b.safetensors", torch.randn(2, 4, 8, 6), torch.tensor([1, 2])),
     r"b.safetensors': latents 8 x 6; the models take square latents"),
    (lambda f: shard(f, "b.safetensors", torch.randint(0, 9, (2, 4, 8, 8)), torch.tensor([1, 2])),
     r"b.safetensors': latents of dtype torch.int64; expected floating point"),
    (lambda f: shard(f, "b.safetensors", torch.randn(3, 4, 8, 8).index_fill_(0, torch.tensor([1]), float("nan")),
                     torch.tensor([1, 2, 3])),
     r"b.safetensors': non-finite values in 1 of its 3 latents \(first: item 1\)"),
    (lambda f: (f / "b.safetensors").write_bytes(open(good(f), "rb").read()[:100]),
     r"b.safetensors': unreadable as safetensors"),
    (lambda f: (f / "b.safetensors").write_bytes(os.urandom(300)), r"b.safetensors': unreadable as safetensors"),
    (lambda f: save_file({"x": torch.zeros(2)}, str(f / "b.safetensors")),
     r"b.safetensors': expected tensors 'latents' and 'labels', got \['x'\]"),
])
def test_bad_shards_are_named(tmp_path, make, message):
    good(tmp_path)
    make(tmp_path)
    with pytest.raises(ValueError, match=message):
        LatentShards(str(tmp_path))


def test_latents_json_shape_and_syntax_are_checked(tmp_path):
    good(tmp_path)
    (tmp_path / "latents.json").write_text(json.dumps({"num_classes": 10, "latent_shape": [4, 16, 16]}))
    with pytest.raises(ValueError, match=r"latent shape \(4, 8, 8\) differs from \(4, 16, 16\) in latents.json"):
        open_dataset(str(tmp_path))
    (tmp_path / "latents.json").write_text(json.dumps({"num_classes": 10, "latent_shape": [4, 8, 8]}))
    assert len(open_dataset(str(tmp_path))) == 3
    (tmp_path / "latents.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"latents.json is not valid JSON"):
        open_dataset(str(tmp_path))


def test_shards_are_validated(tmp_path):
    from safetensors.torch import save_file

    labels = torch.tensor([0, 1, 2, 3])
    save_file({"latents": torch.randn(4, 4, 8, 8), "labels": labels}, str(tmp_path / "a.safetensors"))
    save_file({"latents": torch.randn(4, 4, 4, 4), "labels": labels}, str(tmp_path / "b.safetensors"))
    with pytest.raises(ValueError, match="latent shape \\(4, 4, 4\\) differs"):
        LatentShards(str(tmp_path))
    os.remove(tmp_path / "b.safetensors")
    save_file({"latents": torch.randn(2, 4, 8, 8), "labels": torch.tensor([0, 1000])}, str(tmp_path / "c.safetensors"))
    with pytest.raises(ValueError, match="labels in \\[0, 1000\\], expected \\[0, 999\\]"):
        LatentShards(str(tmp_path))


def test_digits_dataset():
    data = DigitsDataset(16)
    image, label = data[5]
    assert len(data) == 1797 and image.shape == (1, 16, 16) and -1 <= image.min() and image.max() <= 1
    assert 0 <= label < 10
