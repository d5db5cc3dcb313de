"""FD-DINOv2: the Fréchet distance in the CLS features of DINOv2 ViT-L/14, the metric EDM2 and
the dgm-eval project report beside FID, computed as EDM2 computes it.

Images (uint8, any size) are resized to 224 x 224 with PIL's bicubic filter (dgm-eval's exact
preprocessing, which EDM2 keeps as its reference), scaled to [0, 1] and normalised with the
ImageNet mean / std; the feature is the CLS token after the final LayerNorm (1024 for ViT-L).

The network is defined here with the engine's attention; its parameter names are those of the
published checkpoint (`dinov2_vitl14_pretrain.pth`, torch.hub's `facebookresearch/dinov2`), so
that file loads as it is, and its size (width, depth, position grid) is read from the file.
The pretrained position embeddings (a 37 x 37 grid, for 518 px) are resized to the 16 x 16
patches of 224 px as the hub model does: bicubic, no antialiasing, with the scale factor
(16 + 0.1) / 37 (its "interpolate_offset"; Hugging Face's Dinov2Model resizes to the size
instead, which moves the features slightly).
"""
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from mpdit.evaluation.metrics import RunningStatistics, Statistics, exact_float32, frechet_distance
from mpdit.io.files import find_weight_file
from mpdit.io.npz_images import array_keys, check_images_header
from mpdit.models.blocks import Attention

IMAGE_SIZE = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HEAD_WIDTH = 64  # every DINOv2 ViT has 64 channels per head
INTERPOLATE_OFFSET = 0.1
WEIGHTS_FILE = "dinov2_vitl14_pretrain.pth"
WEIGHTS_URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/{WEIGHTS_FILE}"
WEIGHTS_ENV = "MPDIT_DINOV2_WEIGHTS"


class LayerScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    """D -> 4D -> D with the exact GELU (DINOv2's; the engine's diffusion blocks use tanh's)."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block with LayerScale on both branches."""

    def __init__(self, width: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
        self.attn, self.mlp = Attention(width, width // HEAD_WIDTH), Mlp(width)
        self.ls1, self.ls2 = LayerScale(width), LayerScale(width)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch)


class DinoV2(nn.Module):
    """DINOv2 ViT: patch embedding, CLS token, learned positions, blocks, LayerNorm; returns the
    normalised CLS token of (B, 3, H, W) images already normalised."""

    def __init__(self, width: int = 1024, depth: int = 24, patch: int = 14, grid: int = 37):
        super().__init__()
        self.patch, self.grid = patch, grid
        self.patch_embed = PatchEmbed(width, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, width))
        self.mask_token = nn.Parameter(torch.zeros(1, width))  # in the checkpoint; masking is for training only
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def positions(self, rows: int, cols: int) -> torch.Tensor:
        """The position embeddings for a rows x cols patch grid, as the hub model resizes them."""
        if (rows, cols) == (self.grid, self.grid):
            return self.pos_embed
        width = self.pos_embed.shape[-1]
        grid = self.pos_embed[:, 1:].float().reshape(1, self.grid, self.grid, width).permute(0, 3, 1, 2)
        scale = ((rows + INTERPOLATE_OFFSET) / self.grid, (cols + INTERPOLATE_OFFSET) / self.grid)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, width).to(self.pos_embed.dtype)
        return torch.cat([self.pos_embed[:, :1], grid], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + self.positions(x.shape[2] // self.patch, x.shape[3] // self.patch)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) with C 1 or 3 -> float (N, 3, 224, 224): PIL bicubic, [0, 1], ImageNet
    mean / std (grey images as R = G = B)."""
    resized = []
    for image in images:
        image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        resized.append(np.asarray(Image.fromarray(np.ascontiguousarray(image), "RGB").resize(
            (IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)))
    x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def find_dinov2_weights(path: str = None) -> str:
    """The checkpoint: `path`, else $MPDIT_DINOV2_WEIGHTS, else torch's hub cache (where
    torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14') leaves it)."""
    found, cached = find_weight_file(path, WEIGHTS_ENV, WEIGHTS_FILE, "dinov2_weights", WEIGHTS_FILE)
    if found:
        return found
    raise ValueError(f"no DINOv2 weights: pass --dinov2-weights FILE or set {WEIGHTS_ENV}, with {WEIGHTS_FILE} from "
                     f"{WEIGHTS_URL} (or place it in {os.path.dirname(cached)})")


def load_dinov2(path: str = None, device="cpu") -> DinoV2:
    """The network of a DINOv2 checkpoint (its size read from the file), eval mode, fp32."""
    path = find_dinov2_weights(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        width, patch = state["patch_embed.proj.weight"].shape[0], state["patch_embed.proj.weight"].shape[-1]
        depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
        grid = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
    except Exception as error:  # a truncated or foreign file: say which
        raise ValueError(f"dinov2_weights={path!r}: not a DINOv2 checkpoint ({type(error).__name__}: {error})") \
            from None
    network = DinoV2(width, depth, patch, grid)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"dinov2_weights={path!r}: not a DINOv2 checkpoint "
                         f"({str(error).strip().splitlines()[0]})") from None
    return network.to(device).eval().requires_grad_(False)


def dinov2_features(images: np.ndarray, network: DinoV2, device="cpu") -> np.ndarray:
    """(N, width) float32 CLS features of uint8 NHWC images, in exact float32."""
    with torch.no_grad(), exact_float32():
        return network(preprocess(images).to(device)).float().cpu().numpy()


def dinov2_statistics(path: str, network: DinoV2, batch_size: int = 64, device="cpu", progress: bool = True):
    """Mean and covariance (float64) of the DINOv2 features of an image .npz, in batches."""
    reader, running = check_images_header(path), RunningStatistics()
    with tqdm(total=len(reader), unit="img", desc=f"DINOv2 {os.path.basename(path)}", disable=not progress) as bar:
        for chunk in reader.chunks(batch_size):
            running.add(torch.from_numpy(dinov2_features(chunk, network, device)))
            bar.update(len(chunk))
    return running.result(), len(reader)


def evaluate_dinov2(ref: str, samples: str, dinov2_weights: str = None, batch_size: int = 64, device=None,
                    progress: bool = True, warn=print) -> dict:
    """FD-DINOv2 of `samples` against `ref`: against the reference's stored mu_dinov2 /
    sigma_dinov2 (`mpdit eval --make-ref --features dinov2`) when it has them, else its images."""
    for path in (samples, ref):  # both refused before any network is loaded
        check_images_header(path)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    weights = find_dinov2_weights(dinov2_weights)
    network = load_dinov2(weights, device)
    sample_stats, n = dinov2_statistics(samples, network, batch_size, device, progress)
    notes = []
    if {"mu_dinov2", "sigma_dinov2"} <= set(array_keys(ref)):
        with np.load(ref) as saved:
            ref_stats = Statistics(saved["mu_dinov2"].astype(np.float64), saved["sigma_dinov2"].astype(np.float64))
        source = "the reference's stored mu_dinov2 / sigma_dinov2"
    else:
        ref_stats, m = dinov2_statistics(ref, network, batch_size, device, progress)
        source = f"{m} reference images"
        notes.append(f"{ref} stores no mu_dinov2 / sigma_dinov2: FD-DINOv2 against the statistics of its {m} images")
        warn(notes[-1])
    if ref_stats.mu.shape != sample_stats.mu.shape:
        raise ValueError(f"{ref}: mu_dinov2 of shape {ref_stats.mu.shape}; the network {weights} gives "
                         f"{sample_stats.mu.shape} features")
    return {"fd_dinov2": frechet_distance(sample_stats, ref_stats), "num_samples": n,
            "used": {"fd_dinov2": f"{n} samples against {source}; CLS features of {weights}, 224 px PIL bicubic"},
            "notes": notes, "ref": ref, "samples": samples}


def format_dinov2(result: dict) -> str:
    return f"FD-DINOv2: {result['fd_dinov2']:.4f}  ({result['used']['fd_dinov2']})"
