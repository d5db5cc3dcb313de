"""Training data: latent shards checked when opened (readable, float square latents of one shape,
finite, integer labels in range), latents.json read with its name, the digits, and the sampler's
global batches (the same on any world and micro-batch, resumable at a position)."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from mpdit.training.data import DataPosition, DigitsDataset, LatentShards, ResumableSampler, open_dataset


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


def _steps(size, global_batch, micro, world, steps, start=DataPosition()):
    """The sets of items each of `steps` optimizer steps sees, over all ranks."""
    ranks = [iter(ResumableSampler(size, global_batch, micro, r, world, seed=3, start=start)) for r in range(world)]
    return [sorted(next(ranks[r]) for r in range(world) for _ in range(global_batch // world)) for _ in range(steps)]


def test_sampler_steps_are_the_same_global_batches_on_any_world_and_micro_batch():
    """22 items, global batch 4: 5 steps per epoch (2 items left out), then a new permutation."""
    one = _steps(22, 4, micro=4, world=1, steps=12)
    assert sorted(item for step in one[:5] for item in step) != list(range(22))  # 20 of the 22
    assert len({item for step in one[:5] for item in step}) == 20
    assert one[5:10] != one[:5]  # epoch 1: another order
    for world, micro in ((2, 1), (2, 2), (4, 1)):
        assert _steps(22, 4, micro, world, steps=12) == one, (world, micro)


def test_sampler_resumes_at_a_position_in_global_samples():
    one = _steps(22, 4, micro=2, world=1, steps=12)
    for done in (3, 5, 7):
        position = DataPosition().advance(done, 4, 22)
        assert _steps(22, 4, micro=1, world=2, steps=12 - done, start=position) == one[done:], done
    assert DataPosition().advance(7, 4, 22) == DataPosition(1, 8)
    assert DataPosition(0, 12).advance(2, 4, 22) == DataPosition(1, 0)  # 16 + 4 > 22: the epoch ends
    with pytest.raises(ValueError, match="global batch 6: expected a multiple of 4 processes x micro-batch 1"):
        ResumableSampler(22, 6, 1, world=4)


def test_digits_dataset():
    data = DigitsDataset(16)
    image, label = data[5]
    assert len(data) == 1797 and image.shape == (1, 16, 16) and -1 <= image.min() and image.max() <= 1
    assert 0 <= label < 10
