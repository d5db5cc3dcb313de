"""Latent datasets end to end: `mpdit extract-latents` encodes an ImageFolder (a tiny random VAE,
nothing downloaded), unreadable images skipped and listed (or --strict), its settings checked
before the VAE loads; a model trains on the shards and its samples decode back to pixels."""
import json
import os

import numpy as np
import pytest
import torch

from helpers.cli import run_cli
from helpers.models import tiny_vae
from mpdit.data import LatentShards, open_dataset
from mpdit.io import load_checkpoint
from mpdit.training import checkpoint


def image_folder(root):
    from PIL import Image

    os.makedirs(root / "cat")
    for i in range(3):
        Image.fromarray(torch.randint(0, 255, (16, 16, 3), dtype=torch.uint8).numpy()).save(root / "cat" / f"{i}.png")
    Image.fromarray(torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8).numpy()).save(root / "cat" / "big.jpg")
    (root / "cat" / "truncated.jpg").write_bytes((root / "cat" / "big.jpg").read_bytes()[:400])
    (root / "cat" / "corrupt.png").write_bytes(b"\x89PNG not really")
    return [str(root / "cat" / "corrupt.png"), str(root / "cat" / "truncated.jpg")]


@pytest.mark.slow
def test_extract_skips_unreadable_images_naming_each_or_stops_with_strict(tmp_path):
    pytest.importorskip("diffusers")
    bad = image_folder(tmp_path / "images")
    vae = tiny_vae(tmp_path / "vae")
    common = ["--images", str(tmp_path / "images"), "--vae", vae, "--image-size", "16"]
    result = run_cli("extract-latents", *common, "--out", tmp_path / "latents").ok()
    for path in bad:
        assert f"skipping unreadable image {path}" in result.err
    assert (tmp_path / "latents" / "bad_images.txt").read_text().split() == bad
    summary = json.loads(result.out.splitlines()[-1])
    assert summary["images"] == 4 and summary["bad_images"] == 2
    assert len(open_dataset(str(tmp_path / "latents"))) == 4  # latents.json's shape matches the shards
    strict = run_cli("extract-latents", *common, "--out", tmp_path / "strict", "--strict")
    assert f"image {bad[0]!r}: unreadable" in strict.last_line


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "batch_size=0: expected a positive integer"),
    (["--image-size", "0"], "image_size=0: expected a positive multiple of 8"),
    ([], "vae="),  # a VAE that cannot load: one line naming it
    (["--out", "{images}"], "inside the image folder"),
    (["--out", "{images}/cat/latents"], "inside the image folder"),
    (["--out", "{tmp}/earlier"], "holds an earlier extraction (2 files, e.g. latents.json)"),
    (["--out", "{tmp}/a-file"], "a file, not a folder"),
])
def test_extract_settings_are_checked_before_the_vae_loads(tmp_path, args, message):
    image_folder(tmp_path / "images")
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "latents.json").write_text("{}")
    (tmp_path / "earlier" / "shard-r000-00000.safetensors").write_bytes(b"")
    (tmp_path / "a-file").write_text("")
    args = [arg.format(images=tmp_path / "images", tmp=tmp_path) for arg in args]
    result = run_cli("extract-latents", "--images", tmp_path / "images", "--out", tmp_path / "o", "--vae",
                     tmp_path / "no-vae-here", *args)
    last = result.last_line  # (diffusers may print its own notices first)
    assert last.startswith("mpdit extract-latents: error: ") and message in last
    assert sorted(os.listdir(tmp_path / "earlier")) == ["latents.json", "shard-r000-00000.safetensors"]


@pytest.mark.slow
def test_extract_train_and_decode_latents(tmp_path):
    pytest.importorskip("diffusers")
    from PIL import Image

    for label, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        os.makedirs(tmp_path / "images" / f"class{label}")
        for i in range(4):  # non-square sizes exercise the ADM centre crop
            pixels = torch.randint(0, 255, (20 + i, 24, 3), dtype=torch.uint8)
            pixels[..., label * 2] = colour[label * 2]
            Image.fromarray(pixels.numpy()).save(tmp_path / "images" / f"class{label}" / f"{i}.png")
    vae = tiny_vae(tmp_path / "vae")
    run_cli("extract-latents", "--images", tmp_path / "images", "--out", tmp_path / "latents", "--vae", vae,
            "--image-size", "16", "--flip", "--normalisation", "channel").ok()
    shards = LatentShards(str(tmp_path / "latents"), num_classes=2)
    assert len(shards) == 16 and shards[0][0].shape == (4, 8, 8)  # 8 images + flipped copies; /2 downsampling
    assert sorted(shards.labels.tolist()) == [0] * 8 + [1] * 8
    run = tmp_path / "run"
    run_cli("train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", tmp_path / "latents", "--steps", "1",
            "--global-batch-size", "4", "--run-dir", run, "--num-workers", "0", "--sample-every", "0").ok()
    out = tmp_path / "decoded.npz"
    run_cli("sample", checkpoint.latest(str(run)), "--classes", "0,1", "--steps", "2", "--out", out).ok()
    assert np.load(out)["arr_0"].shape == (2, 16, 16, 3)  # decoded back to pixels
    # Where no VAE is at hand: keep the latents, decode them later to the same images
    os.rename(vae, str(tmp_path / "vae-elsewhere"))
    kept = tmp_path / "latents-only.npz"
    run_cli("sample", checkpoint.latest(str(run)), "--classes", "0,1", "--steps", "2", "--out", kept,
            "--latents-only").ok()
    latents = np.load(kept)["latents"]
    assert latents.shape == (2, 4, 8, 8) and latents.dtype == np.float32
    assert not (tmp_path / "latents-only.png").exists()
    import mpdit
    from mpdit.io.images import to_uint8
    from mpdit.models.vae import load_vae

    info = load_checkpoint(checkpoint.latest(str(run)))["latents"]
    pixels = mpdit.decode(torch.from_numpy(latents), info, load_vae(str(tmp_path / "vae-elsewhere"), "cpu"))
    assert np.abs(to_uint8(pixels).numpy().astype(int) - np.load(out)["arr_0"]).max() <= 1
    last = run_cli("sample", checkpoint.latest(str(run)), "--classes", "0,1", "--steps", "2", "--out", out).last_line
    assert last.startswith("mpdit sample: ") and "vae-elsewhere" not in last
    assert f"vae={vae!r}: no such folder" in last


def test_extract_rejects_bad_folders(tmp_path):
    assert "no such folder" in run_cli("extract-latents", "--images", tmp_path / "none", "--out", tmp_path / "o").error
    os.makedirs(tmp_path / "empty" / "cls")
    result = run_cli("extract-latents", "--images", tmp_path / "empty", "--out", tmp_path / "o")
    assert "no images in class sub-folders" in result.error
