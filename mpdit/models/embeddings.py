"""Input embeddings: patches, fixed 2-D position tables, time (MLP or FNO) and class."""
import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mpdit_kernels import ops
from mpdit_kernels.backend import TORCH, Backend


# --------------------------------------------------------------------------- patches
class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches of a (B, C, H, W) latent, projected to width D."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, H/p * W/p, D)


def sincos_pos_embed_2d(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table (grid_h * grid_w, dim), laid out as DiT's (MAE's) numpy code.

    The first dim/2 channels encode the column, the last dim/2 the row; each half is
    [sin, cos] of position * 10000^(-i / (dim/4)). Computed in float64, as the original.
    """
    if dim % 4:
        raise ValueError(f"hidden_size={dim}: the 2-D sin-cos position table needs a multiple of 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                                torch.arange(grid_w, dtype=torch.float64), indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega  # (h*w, dim/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()  # (h*w, dim)


# --------------------------------------------------------------------------- time
class MLPTimeEmbedding(nn.Module):
    """DiT's time embedding: 256 sinusoidal frequencies -> Linear -> SiLU -> Linear."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    @staticmethod
    def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # t in [0, 1], fed as is, like SiT (DiT feeds integer steps 0..999).
        freq = self.sinusoidal(t, self.frequency_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (B, D)


class FNOTimeEmbedding(nn.Module):
    """MPDiT's time embedding (docs/model.md, step 3).

    t -> grid linspace(-1, 1, n) + t -> Linear(1, width) lift -> `layers` Fourier layers
    (spectral conv over the lowest `modes` modes + pointwise 1x1 conv, GELU after all but
    the last) -> mean over the grid -> Linear(width, D). Computed in float32 whatever the
    autocast. The spectral weights of all layers are one real (layers, in, out, modes, 2)
    tensor (complex pairs), so optimisers, DDP and safetensors see plain real data.
    """

    def __init__(self, hidden_size: int, grid_size: int = 32, width: int = 32, modes: int = 16, layers: int = 3,
                 backend: Backend = TORCH):
        super().__init__()
        if modes > grid_size // 2:  # below the Nyquist mode, whose inverse-DFT weight differs
            raise ValueError(f"modes={modes}: expected at most grid_size // 2 = {grid_size // 2}")
        self.register_buffer("grid", torch.linspace(-1.0, 1.0, grid_size), persistent=False)
        self.lift = nn.Linear(1, width)
        scale = 1.0 / (width * width)  # neural-operator convention for spectral weights
        self.spectral_weight = nn.Parameter(scale * torch.rand(layers, width, width, modes, 2))
        bound = 1.0 / math.sqrt(width)  # nn.Conv1d's default init for a 1x1 convolution
        self.pointwise_weight = nn.Parameter(torch.empty(layers, width, width).uniform_(-bound, bound))
        self.pointwise_bias = nn.Parameter(torch.empty(layers, width).uniform_(-bound, bound))
        self.proj = nn.Linear(width, hidden_size)
        self.backend = backend

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        device = t.device.type
        # The meta device (the FLOP audit) has no autocast. A plain comparison, not
        # torch.amp.is_autocast_available: torch.compile cannot trace that on some releases.
        no_autocast = torch.autocast(device, enabled=False) if device != "meta" else contextlib.nullcontext()
        with no_autocast:
            features = ops.fno_time_features(
                t.float(), self.grid.float(), self.lift.weight.float(), self.lift.bias.float(),
                self.spectral_weight.float(), self.pointwise_weight.float(), self.pointwise_bias.float(),
                self.backend)  # (B, width)
            return F.linear(features, self.proj.weight.float(), self.proj.bias.float())  # (B, D)


# --------------------------------------------------------------------------- class
class ClassEmbedding(nn.Module):
    """A table of `tokens` learned D-vectors per class; row num_classes is the null class.

    tokens = 0 gives DiT's single vector (added to the time embedding); tokens = m gives
    MPDiT's m class tokens, prepended to the image tokens. null_class=False: no null row (DiT
    built with class_dropout_prob=0, mpdit.compat).
    """

    def __init__(self, num_classes: int, hidden_size: int, tokens: int, null_class: bool = True):
        super().__init__()
        self.tokens = max(tokens, 1)
        self.embedding_table = nn.Embedding(num_classes + int(null_class), self.tokens * hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y).view(y.shape[0], self.tokens, -1)  # (B, tokens, D)
