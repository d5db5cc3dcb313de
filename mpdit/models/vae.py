"""The autoencoder latent models run in: diffusers' AutoencoderKL (sd-vae-ft-ema / -mse) and the
latent normalisations. Optional: only latent runs need diffusers."""
import os
from urllib.parse import urlparse

import torch

from mpdit.network import reachable

# The MPDiT public code's per-channel statistics of raw sd-vae latents (docs/model.md, "Training").
CHANNEL_MEAN = (5.81, 3.25, 0.12, -2.15)
CHANNEL_STD = (4.17, 4.62, 3.71, 3.28)
SD_SCALE = 0.18215
NORMALISATIONS = ("scale", "channel")


def normalise(latents: torch.Tensor, normalisation: str) -> torch.Tensor:
    if normalisation == "scale":
        return latents * SD_SCALE
    mean = torch.tensor(CHANNEL_MEAN, device=latents.device).view(1, -1, 1, 1)
    std = torch.tensor(CHANNEL_STD, device=latents.device).view(1, -1, 1, 1)
    return (latents - mean) / std


def denormalise(latents: torch.Tensor, normalisation: str) -> torch.Tensor:
    if normalisation == "scale":
        return latents / SD_SCALE
    mean = torch.tensor(CHANNEL_MEAN, device=latents.device).view(1, -1, 1, 1)
    std = torch.tensor(CHANNEL_STD, device=latents.device).view(1, -1, 1, 1)
    return latents * std + mean


def load_vae(name_or_path: str, device):
    try:
        from diffusers.models import AutoencoderKL  # optional: only extraction and latent decoding need it
    except ImportError:
        raise ValueError(f"vae={name_or_path!r}: latents are encoded and decoded with diffusers' AutoencoderKL; "
                         "install it: pip install -e '.[latents]' (or pip install diffusers)") from None

    if os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")):  # a path, not a hub name
        if not os.path.isdir(os.path.expanduser(name_or_path)):
            raise ValueError(f"vae={name_or_path!r}: no such folder (expected a saved AutoencoderKL, or a hub name "
                             "such as stabilityai/sd-vae-ft-ema; --vae chooses another)")
        name_or_path = os.path.expanduser(name_or_path)
    # Without network diffusers retries the hub for about 30 s: ask once, then use the cache only
    hub = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    offline = not os.path.isdir(name_or_path) and (os.environ.get("HF_HUB_OFFLINE") == "1" or not reachable(hub))
    try:
        vae = AutoencoderKL.from_pretrained(name_or_path, local_files_only=offline)
    except (OSError, ValueError) as error:  # offline hub, a wrong name, a folder without a VAE
        if offline:
            raise ValueError(f"vae={name_or_path!r}: not a local folder nor in the Hugging Face cache, and {hub} "
                             "cannot be reached from here; download it where there is network "
                             f"(huggingface-cli download {name_or_path}) or pass a local folder (--vae)") from None
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"vae={name_or_path!r}: cannot load an AutoencoderKL ({first})") from None
    return vae.to(device).eval().requires_grad_(False)


@torch.no_grad()
def decode(latents: torch.Tensor, info: dict, vae=None) -> torch.Tensor:
    """Normalised latents -> images in [-1, 1] through the VAE named in latents.json (`info`:
    the model's `latents` record; None for a pixel-space model, whose samples are images)."""
    if info is None:
        raise ValueError("info=None: this model works in pixel space (no latents record); its samples are images "
                         "already, in [-1, 1]")
    model = vae if vae is not None else load_vae(info["vae"], latents.device)
    return model.decode(denormalise(latents.float(), info["normalisation"])).sample.clamp(-1, 1)
