"""`mpdit eval --make-ref`: a reference batch in the ADM layout for a dataset of one's own, so a
run on it is evaluated as ImageNet runs are: `arr_0` a fixed random subset of (at most) 10,000
images, uint8 NHWC (precision / recall); `mu`, `sigma` (pool_3) and `mu_s`, `sigma_s` (sFID
features) over all images; with --features dinov2 also `mu_dinov2`, `sigma_dinov2` (FD-DINOv2).
"""
import os

import numpy as np
import torch
from tqdm import tqdm

from mpdit.evaluation.dinov2 import dinov2_features, load_dinov2
from mpdit.evaluation.inception import find_weights, load_inception
from mpdit.evaluation.metrics import RunningStatistics, exact_float32
from mpdit.io.files import check_output
from mpdit.io.npz_images import check_images_header, write_npz

REFERENCE_IMAGES = 10000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def centre_crop(image, size: int) -> np.ndarray:
    """A PIL image -> size x size x 3 uint8, as ADM prepares ImageNet: halve with a box filter while
    the short side is at least twice `size`, resize it to `size` (bicubic), crop the centre."""
    from PIL import Image

    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    array = np.asarray(image.convert("RGB"))
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return array[top:top + size, left:left + size]


class ImageFolder:
    """Every image under a folder (sorted paths), as uint8 H x W x 3 arrays of one size."""

    def __init__(self, folder: str, image_size: int = None):
        self.paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                            if name.lower().endswith(IMAGE_SUFFIXES))
        if not self.paths:
            raise ValueError(f"source={folder!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
        self.image_size = image_size

    def __len__(self):
        return len(self.paths)

    def _read(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                if self.image_size:
                    return centre_crop(image, self.image_size)
                return np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from None

    def chunks(self, rows: int):
        first_shape = None
        for start in range(0, len(self.paths), rows):
            batch = [self._read(p) for p in self.paths[start:start + rows]]
            for path, image in zip(self.paths[start:start + rows], batch):
                first_shape = first_shape or image.shape
                if image.shape != first_shape:
                    raise ValueError(f"{path}: {image.shape[1]}x{image.shape[0]}, the first image "
                                     f"{first_shape[1]}x{first_shape[0]}; pass --image-size to crop all to one size")
            yield np.stack(batch)


def make_reference(source: str, out: str, image_size: int = None, count: int = REFERENCE_IMAGES, seed: int = 0,
                   inception_weights: str = None, batch_size: int = 64, device=None, progress: bool = True,
                   dinov2: bool = False, dinov2_weights: str = None) -> dict:
    """Writes the reference batch of `source` (a folder of images or an image .npz) to `out`;
    with `dinov2`, also the statistics of its DINOv2 features (mu_dinov2 / sigma_dinov2)."""
    check_output(out, ".npz", inputs=[source])
    if count < 4:
        raise ValueError(f"count={count}: expected at least 4 reference images (precision / recall use k=3)")
    if os.path.isdir(source):
        images = ImageFolder(source, image_size)
    else:
        if image_size:
            raise ValueError(f"image_size={image_size}: only for a folder of images; {source} is an .npz")
        images = check_images_header(source)
    total = len(images)
    if total < 4:
        raise ValueError(f"source={source!r}: {total} images; a reference needs at least 4")
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    network = load_inception(find_weights(inception_weights), device)
    dinov2_network = load_dinov2(dinov2_weights, device) if dinov2 else None
    # the statistics written, by the suffix of their names: mu / sigma, mu_s / sigma_s, mu_dinov2 / sigma_dinov2
    running = {suffix: RunningStatistics() for suffix in ("", "_s") + (("_dinov2",) if dinov2 else ())}
    kept, start = [], 0
    with torch.no_grad(), exact_float32(), tqdm(total=total, unit="img", desc="reference", disable=not progress) as bar:
        for chunk in images.chunks(batch_size):
            chunk = np.repeat(chunk, 3, axis=-1) if chunk.shape[-1] == 1 else chunk  # grey: R = G = B
            features = network(torch.from_numpy(np.ascontiguousarray(chunk)).to(device).permute(0, 3, 1, 2))
            running[""].add(features["pool"])
            running["_s"].add(features["spatial"])
            if dinov2:
                running["_dinov2"].add(torch.from_numpy(dinov2_features(chunk, dinov2_network, device)))
            mine = chosen[(chosen >= start) & (chosen < start + len(chunk))] - start
            kept.append(chunk[mine].copy())
            start += len(chunk)
            bar.update(len(chunk))
    subset = np.concatenate(kept)
    arrays = {"arr_0": subset}
    for suffix, statistics in running.items():
        stats = statistics.result()
        arrays.update({f"mu{suffix}": stats.mu, f"sigma{suffix}": stats.sigma})
    write_npz(out, {name: (array.shape, array.dtype, [array]) for name, array in arrays.items()})
    return {"out": out, "images": total, "arr_0": len(subset), "resolution": list(subset.shape[1:3])}
