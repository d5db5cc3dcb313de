"""Image folders to latent shards through diffusers' AutoencoderKL (mpdit.models.vae).

`mpdit extract-latents` reads an ImageFolder (one sub-folder per class, sorted names =
labels), centre-crops as ADM does, encodes with the VAE (sd-vae-ft-ema by default),
normalises, and writes safetensors shards (`latents`, `labels`) plus `latents.json` with the
VAE and the normalisation, which `mpdit sample` reads to decode. Under torchrun each rank
encodes every world-th image into its own shards.
"""
import json
import os
import sys
from dataclasses import dataclass

import torch

from mpdit.io.files import atomic_path
from mpdit.models.vae import CHANNEL_MEAN, NORMALISATIONS, load_vae, normalise
from mpdit.options import check_choices, option, required

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def check_out_folder(images: str, out: str) -> None:
    """ValueError before any work when `out` is (or lies inside) the image folder, is a file, or
    holds an earlier extraction, whose shards would mix with the new ones."""
    images_path, out_path = os.path.realpath(images), os.path.realpath(out)
    if os.path.commonpath([images_path, out_path]) == images_path:
        raise ValueError(f"out={out!r}: inside the image folder {images!r}; write the latents elsewhere")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out={out!r}: a file, not a folder")
    earlier = sorted(name for name in os.listdir(out) if name.endswith(".safetensors") or name == "latents.json") \
        if os.path.isdir(out) else []
    if earlier:
        raise ValueError(f"out={out!r}: holds an earlier extraction ({len(earlier)} files, e.g. {earlier[0]}); its "
                         "shards would mix with the new ones: remove them or choose another --out")


def list_image_folder(folder: str):
    """[(path, label)], classes = sorted sub-folder names."""
    if not os.path.isdir(folder):
        raise ValueError(f"images={folder!r}: no such folder")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    items = [(os.path.join(folder, name, f), label) for label, name in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(folder, name))) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not items:
        raise ValueError(f"images={folder!r}: no images in class sub-folders (expected <folder>/<class>/<image>)")
    return items, classes


def center_crop(image, size: int):
    """ADM's centre crop (guided-diffusion image_datasets.center_crop_arr): box-halve while
    the short side is at least twice the size, bicubic to the size, crop the middle."""
    from PIL import Image

    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path: str, size: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        array = torch.tensor(list(center_crop(image.convert("RGB"), size).getdata()), dtype=torch.uint8)
    return array.view(size, size, 3).permute(2, 0, 1).float() / 127.5 - 1  # (3, size, size) in [-1, 1]


@dataclass(frozen=True)
class ExtractSettings:
    """Every setting of `mpdit extract-latents`; its options are generated from these fields."""

    images: str = required("ImageFolder: one sub-folder per class")
    out: str = required("folder for the shards and latents.json")
    vae: str = option("stabilityai/sd-vae-ft-ema", "hub name or local path")
    image_size: int = option(256, "every image centre-cropped and resized to this side (ADM's crop) before encoding")
    normalisation: str = option("scale", "scale: x 0.18215; channel: the per-channel mean/std of the MPDiT code",
                                choices=NORMALISATIONS)
    flip: bool = option(False, "also store horizontally flipped copies")
    batch_size: int = option(32, "images per VAE call (per process)")
    seed: int = option(0, "the noise of the VAE posterior samples stored (each process draws from seed + rank)")
    strict: bool = option(False, "stop at an unreadable image (default: skip it with a warning and list it in "
                                 "<out>/bad_images.txt)")

    def check(self) -> None:
        check_choices(self)  # the normalisation
        if not isinstance(self.image_size, int) or self.image_size < 8 or self.image_size % 8:
            raise ValueError(f"image_size={self.image_size}: expected a positive multiple of 8")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: expected a positive integer")


@torch.no_grad()
def extract_latents(settings: ExtractSettings, rank: int = 0, world: int = 1, device="cpu", vae=None,
                    shard_size: int = 4096) -> dict:
    """Encode the folder as `settings` say; `vae`: an AutoencoderKL already built, instead of
    settings.vae (a hub name or a local path). An unreadable image is skipped with a warning
    naming it and listed in bad_images.txt (bad_images-r<rank>.txt under torchrun); strict=True
    stops at the first instead."""
    from safetensors.torch import save_file

    settings.check()
    out, batch_size = settings.out, settings.batch_size
    items, classes = list_image_folder(settings.images)
    check_out_folder(settings.images, out)
    if world > 1 and torch.distributed.is_initialized():  # every rank looks before any rank writes
        torch.distributed.barrier()
    vae_name = settings.vae if vae is None else getattr(vae, "name_or_path", None) or "in-memory AutoencoderKL"
    model = load_vae(settings.vae, device) if vae is None else vae.to(device).eval()
    if settings.normalisation == "channel" and model.config.latent_channels != len(CHANNEL_MEAN):
        raise ValueError(f"normalisation='channel': the per-channel statistics are for 4 latent channels, "
                         f"this VAE has {model.config.latent_channels}")
    os.makedirs(out, exist_ok=True)
    mine = items[rank::world]
    generator = torch.Generator(device=device).manual_seed(settings.seed + rank)
    latents, labels, shards = [], [], 0
    latent_shape = None

    def write_shard():
        nonlocal latents, labels, shards
        if latents:  # complete or absent: a killed extraction leaves no torn shard
            with atomic_path(os.path.join(out, f"shard-r{rank:03d}-{shards:05d}.safetensors")) as tmp:
                save_file({"latents": torch.cat(latents).cpu().contiguous(), "labels": torch.tensor(labels)}, tmp)
            shards += 1
            latents, labels = [], []

    bad_images = []
    for start in range(0, len(mine), batch_size):
        batch, images_read = [], []
        for path, label in mine[start:start + batch_size]:
            try:
                images_read.append(load_image(path, settings.image_size))
                batch.append((path, label))
            except (OSError, ValueError, SyntaxError) as error:  # PIL: corrupt, truncated, not an image
                if settings.strict:
                    raise ValueError(f"image {path!r}: unreadable ({error}); without --strict it is skipped") from None
                print(f"mpdit extract-latents: warning: skipping unreadable image {path} ({error})", file=sys.stderr)
                bad_images.append(path)
        if not batch:
            continue
        pixels = torch.stack(images_read).to(device)
        views = [pixels, pixels.flip(-1)] if settings.flip else [pixels]  # the paper's flip, at extraction
        for view in views:
            posterior = model.encode(view).latent_dist
            sample = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator,
                                                                  device=device)
            latents.append(normalise(sample.float(), settings.normalisation))
            latent_shape = list(sample.shape[1:])
            labels += [label for _, label in batch]
        if sum(len(x) for x in latents) >= shard_size:
            write_shard()
    write_shard()
    if bad_images:
        name = "bad_images.txt" if world == 1 else f"bad_images-r{rank:03d}.txt"
        with atomic_path(os.path.join(out, name)) as tmp, open(tmp, "w") as f:
            f.write("".join(path + "\n" for path in bad_images))
    info = {"vae": vae_name, "normalisation": settings.normalisation, "image_size": settings.image_size,
            "classes": classes, "num_classes": len(classes), "flip": settings.flip, "latent_shape": latent_shape}
    if rank == 0:
        with atomic_path(os.path.join(out, "latents.json")) as tmp, open(tmp, "w") as f:
            json.dump(info, f, indent=1)
    return {**info, "images": len(mine) - len(bad_images), "bad_images": len(bad_images), "shards": shards}
