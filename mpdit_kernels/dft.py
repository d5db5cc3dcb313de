"""The real-DFT bases the FNO time embedding's spectral layers use, in PyTorch and in Triton."""
import math

import torch


def real_dft_bases(grid_size: int, modes: int, device) -> tuple:
    """(forward re, forward im) (M, N) and (inverse re, inverse im) (N, M), float32:
    X = (cos, -sin) h;  h = (c cos / N, -c sin / N) Y with c = 1 for the DC mode, else 2.
    The angle's integer part k n mod N is exact, so the tables are float32-accurate."""
    k = torch.arange(modes, device=device)[:, None]
    n = torch.arange(grid_size, device=device)[None, :]
    angle = (k * n % grid_size).float() * (2 * math.pi / grid_size)  # (M, N)
    weight = torch.where(k == 0, 1.0, 2.0) / grid_size  # (M, 1)
    cos, sin = angle.cos(), angle.sin()
    return cos, -sin, (weight * cos).T, (-weight * sin).T
