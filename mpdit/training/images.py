"""Images out of the models: uint8 conversion and PNG grids."""
import torch


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, the layout of the ADM evaluator's .npz."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def save_grid(images: torch.Tensor, path: str, rows: int, scale: int = 4) -> str:
    """(N, H, W, C) uint8 -> a PNG of `rows` rows, each image enlarged `scale` times."""
    from PIL import Image

    n, h, w, c = images.shape
    cols = -(-n // rows)
    grid = torch.zeros(rows * h, cols * w, c, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = images[i]
    picture = Image.fromarray(grid.squeeze(-1).numpy() if c == 1 else grid.numpy())
    picture.resize((cols * w * scale, rows * h * scale), Image.NEAREST).save(path)
    return path
