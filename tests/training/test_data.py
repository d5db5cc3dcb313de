"""Bad data named where it is: latent shards checked when opened (readable, float square latents of
one shape, finite, integer labels), latents.json read with its name, unreadable images skipped and
listed by extract-latents (or --strict), and the model API's odd-but-valid labels and empty batches."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from mpdit import create_model
from mpdit.training.data import LatentShards, open_dataset
from model_utils import tiny_vae


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


def image_folder(root):
    from PIL import Image

    os.makedirs(root / "cat")
    for i in range(3):
        Image.fromarray(torch.randint(0, 255, (16, 16, 3), dtype=torch.uint8).numpy()).save(root / "cat" / f"{i}.png")
    Image.fromarray(torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8).numpy()).save(root / "cat" / "big.jpg")
    (root / "cat" / "truncated.jpg").write_bytes((root / "cat" / "big.jpg").read_bytes()[:400])
    (root / "cat" / "corrupt.png").write_bytes(b"\x89PNG not really")
    return [str(root / "cat" / "corrupt.png"), str(root / "cat" / "truncated.jpg")]


def extract(*args):
    return subprocess.run([sys.executable, "-m", "mpdit", "extract-latents", *args], capture_output=True, text=True,
                          timeout=300)


def test_extract_skips_unreadable_images_naming_each_or_stops_with_strict(tmp_path):
    pytest.importorskip("diffusers")
    bad = image_folder(tmp_path / "images")
    vae = tiny_vae(tmp_path / "vae")
    common = ["--images", str(tmp_path / "images"), "--vae", vae, "--image-size", "16"]
    result = extract(*common, "--out", str(tmp_path / "latents"))
    assert result.returncode == 0, result.stderr[-2000:]
    for path in bad:
        assert f"skipping unreadable image {path}" in result.stderr
    assert (tmp_path / "latents" / "bad_images.txt").read_text().split() == bad
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["images"] == 4 and summary["bad_images"] == 2
    assert len(open_dataset(str(tmp_path / "latents"))) == 4  # latents.json's shape matches the shards
    strict = extract(*common, "--out", str(tmp_path / "strict"), "--strict")
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert f"image {bad[0]!r}: unreadable" in strict.stderr


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
    result = extract("--images", str(tmp_path / "images"), "--out", str(tmp_path / "o"), "--vae",
                     str(tmp_path / "no-vae-here"), *args)
    last = result.stderr.strip().splitlines()[-1]  # (diffusers may print its own notices first)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith("mpdit extract-latents: error: ") and message in last
    assert sorted(os.listdir(tmp_path / "earlier")) == ["latents.json", "shard-r000-00000.safetensors"]


def test_model_takes_small_integer_labels_and_refuses_an_empty_batch():
    model = create_model("MPDiT-S", stages=((4, 1), (2, 1)), latent_size=16).eval()
    x, t = torch.randn(2, 4, 16, 16), torch.rand(2)
    with torch.no_grad():
        small = torch.tensor([3, 7], dtype=torch.uint8)
        torch.testing.assert_close(model(x, t, small), model(x, t, torch.tensor([3, 7])))
    with pytest.raises(ValueError, match=r"x: an empty batch \(shape \(0, 4, 16, 16\)\)"):
        model(x[:0], t[:0], torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "4",
      "--run-dir", "{file}"], "run_dir='{file}': cannot be a folder here"),
    (["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "4",
      "--run-dir", "{file}/run"], "run_dir='{file}/run': cannot be a folder here"),
    (["export-ema", "--checkpoint", "{file}", "--out", "{file}/ema.safetensors"],
     "out='{file}/ema.safetensors': a file stands where the folder {file} should be"),
    (["sample", "--checkpoint", "{file}", "--out", "s.npz", "--classes", ""],
     "argument --classes: '': expected comma-separated integers"),
])
def test_cli_mistakes_are_one_line(tmp_path, capsys, argv, message):
    from mpdit.cli import main

    file = tmp_path / "a-file"
    file.write_text("")
    argv = [arg.format(file=file) for arg in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message.format(file=file) in err and err.count("\n") == 1, err
