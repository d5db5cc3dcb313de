"""Input embeddings: patches, fixed 2-D position tables, time (MLP or FNO) and class."""
import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


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


class SpectralConv1d(nn.Module):
    """FNO spectral convolution: rfft -> mix the lowest `modes` modes by complex weights -> irfft.

    Weights are stored as real (in, out, modes, 2) pairs so optimisers, DDP and
    safetensors see a plain real tensor.
    """

    def __init__(self, channels: int, modes: int):
        super().__init__()
        self.modes = modes
        scale = 1.0 / (channels * channels)  # neural-operator convention
        self.weight = nn.Parameter(scale * torch.rand(channels, channels, modes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, n) float32
        x_ft = torch.fft.rfft(x, dim=-1)[..., : self.modes]  # (B, C, modes) complex
        mixed = torch.einsum("bim,iom->bom", x_ft, torch.view_as_complex(self.weight))
        return torch.fft.irfft(mixed, n=x.shape[-1], dim=-1)  # (B, C, n)


class FNOTimeEmbedding(nn.Module):
    """MPDiT's time embedding (notes, step 3).

    t -> grid linspace(-1, 1, n) + t -> Linear(1, width) lift -> `layers` Fourier layers
    (spectral conv + pointwise 1x1 conv, GELU after all but the last) -> mean over the
    grid -> Linear(width, D). Computed in float32 whatever the autocast.
    """

    def __init__(self, hidden_size: int, grid_size: int = 32, width: int = 32, modes: int = 16, layers: int = 3):
        super().__init__()
        if modes > grid_size // 2 + 1:
            raise ValueError(f"modes={modes}: expected at most grid_size // 2 + 1 = {grid_size // 2 + 1}")
        self.register_buffer("grid", torch.linspace(-1.0, 1.0, grid_size), persistent=False)
        self.lift = nn.Linear(1, width)
        self.spectral = nn.ModuleList(SpectralConv1d(width, modes) for _ in range(layers))
        self.pointwise = nn.ModuleList(nn.Conv1d(width, width, kernel_size=1) for _ in range(layers))
        self.proj = nn.Linear(width, hidden_size)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        device = t.device.type
        no_autocast = torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) \
            else contextlib.nullcontext()  # the meta device used by the FLOP audit has no autocast
        with no_autocast:
            points = self.grid[None, :, None] + t.float()[:, None, None]  # (B, n, 1)
            h = self.lift(points).transpose(1, 2)  # (B, width, n)
            last = len(self.spectral) - 1
            for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise)):
                h = spectral(h) + pointwise(h)
                if i < last:
                    h = F.gelu(h)
            return self.proj(h.mean(dim=-1))  # (B, D)


# --------------------------------------------------------------------------- class
class ClassEmbedding(nn.Module):
    """A table of `tokens` learned D-vectors per class; row num_classes is the null class.

    tokens = 0 gives DiT's single vector (added to the time embedding); tokens = m gives
    MPDiT's m class tokens, prepended to the image tokens.
    """

    def __init__(self, num_classes: int, hidden_size: int, tokens: int):
        super().__init__()
        self.tokens = max(tokens, 1)
        self.embedding_table = nn.Embedding(num_classes + 1, self.tokens * hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y).view(y.shape[0], self.tokens, -1)  # (B, tokens, D)
