"""Images out of the models: uint8 conversion and PNG grids."""
import torch

from mpdit.io.files import atomic_path


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, the layout of the ADM evaluator's .npz."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def save_grid(images: torch.Tensor, labels, path: str, max_rows: int = 10, max_cols: int = 10, scale: int = 4,
              pad: int = 2) -> str:
    """(N, H, W, C) uint8 with their labels -> a PNG with one row per class (the first `max_rows`
    classes, up to `max_cols` images each), the label at the left of its row, `pad` pixels
    between cells; each image enlarged `scale` times."""
    from PIL import Image, ImageDraw

    labels = [int(label) for label in labels]
    classes = list(dict.fromkeys(labels))[:max_rows]
    rows = [[i for i, label in enumerate(labels) if label == c][:max_cols] for c in classes]
    n, h, w, c = images.shape
    cell_h, cell_w = h * scale, w * scale
    margin = 8 * max(len(str(c)) for c in classes) + 2 * pad  # the label column
    cols = max(len(row) for row in rows)
    size = (margin + cols * (cell_w + pad) + pad, len(rows) * (cell_h + pad) + pad)
    picture = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    for r, (label, row) in enumerate(zip(classes, rows)):
        top = pad + r * (cell_h + pad)
        draw.text((pad, top + cell_h // 2 - 5), str(label), fill=(0, 0, 0))
        for k, index in enumerate(row):
            cell = images[index].numpy()
            tile = Image.fromarray(cell.squeeze(-1) if c == 1 else cell).convert("RGB")
            picture.paste(tile.resize((cell_w, cell_h), Image.NEAREST), (margin + k * (cell_w + pad) + pad, top))
    with atomic_path(path) as tmp:  # complete or absent
        picture.save(tmp, format="PNG")
    return path
