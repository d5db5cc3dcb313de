"""Converted official weights under the engine's samplers, each with its own conventions.

The engine samples a velocity field from noise at t = 1 to data at t = 0 (the reference MPDiT's
convention, so its weights run as they are). SiT runs the other way (noise at t = 0, data at
t = 1, velocity data - noise), so its field is turned around: v(x, t) = -v_SiT(x, 1 - t). DiT is
a DDPM eps model and samples with mpdit.diffusion.ddpm on its own module (integer steps).
"""
import torch

from mpdit.compat.layouts import to_official
from mpdit.compat.models import official_model
from mpdit.io import build


class SiTVelocity(torch.nn.Module):
    """A SiT network as an engine velocity field (same weights, time and sign turned around)."""

    def __init__(self, sit: torch.nn.Module):
        super().__init__()
        self.sit = sit
        self.config = sit.config

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.sit(x, 1 - t, y)


def sampling_model(saved: dict, device, native: torch.nn.Module = None) -> torch.nn.Module:
    """What the samplers run for a file read by mpdit.io.read, in eval mode on `device`: the
    engine's model, a SiT velocity wrapper, or (DiT) the official module for mpdit.diffusion.ddpm.
    native: the engine's model of those weights, when already built (mpdit.load's)."""
    origin = saved.get("origin")
    family = origin["family"] if origin else None
    if family != "dit":
        native = native if native is not None else build(saved, device=device)
        return SiTVelocity(native) if family == "sit" else native
    dit = official_model("dit", origin["model"], **origin["kwargs"])
    dit.load_state_dict(to_official(saved["state_dict"], dit.config, "dit"))
    return dit.to(device).eval()
