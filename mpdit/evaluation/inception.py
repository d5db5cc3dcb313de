"""The Inception-v3 of the ADM evaluator, in PyTorch: TensorFlow's 2015 ImageNet graph
(`classify_image_graph_def.pb`), with the weights torch-fidelity converted from it.

The architecture is defined here, module names matching torch-fidelity's weight file, so that
file loads as it is and nothing imports torchvision (whose index wheels do not import on a
CPU build of torch). Where the 2015 graph differs from torchvision's Inception-v3 it is
followed: average pools that do not count the padding, and a max pool in the last block's
pooling branch. The input is resized inside, as the graph does (TensorFlow 1's bilinear
resize, corners not aligned, no antialiasing), then scaled by (x - 128) / 128.

Outputs, per image: `pool` (pool_3, 2048: FID, precision, recall), `spatial` (mixed_6/conv,
i.e. Mixed_6d's 1x1 branch, first 7 channels in NHWC order, 2023: sFID) and `logits` (pool_3
times the softmax weights, no bias, 1008 classes: Inception Score).
"""
import hashlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from mpdit.evaluation.inception_weights import read_inception_weights
from mpdit.io.files import find_weight_file
from mpdit.network import reachable

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
WEIGHTS_ENV = "MPDIT_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
SPATIAL_CHANNELS = 7  # the ADM evaluator keeps the first 7 of mixed_6/conv's 192 channels


def resize_like_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, size, size), TensorFlow 1's ResizeBilinear without aligned
    corners: source coordinate = out index x (in / out) in float32, the lower and upper
    neighbours clamped to the image, interpolated along the width, then the height."""
    def axis(n_in):
        scale = torch.tensor(n_in / size, dtype=torch.float32)
        source = torch.arange(size, dtype=torch.float32) * scale
        lower = source.floor().long()
        upper = (lower + 1).clamp(max=n_in - 1)
        return lower.to(x.device), upper.to(x.device), (source - lower.float()).to(x.device, x.dtype)

    top, bottom, dy = axis(x.shape[2])
    left, right, dx = axis(x.shape[3])
    rows_top, rows_bottom = x[:, :, top], x[:, :, bottom]
    upper = rows_top[..., left] + (rows_top[..., right] - rows_top[..., left]) * dx
    lower = rows_bottom[..., left] + (rows_bottom[..., right] - rows_bottom[..., left]) * dx
    return upper + (lower - upper) * dy[:, None]


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, TensorFlow's), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)  # TensorFlow's: padding not counted


class MixedA(nn.Module):
    """Mixed_5b..5d (35 x 35): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, cin: int, pool_channels: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_channels, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool(x))], 1)


class ReduceA(nn.Module):
    """Mixed_6a: 35 x 35 -> 17 x 17."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class MixedC(nn.Module):
    """Mixed_6b..6e (17 x 17): factorised 7x7 branches. Its 1x1 branch is returned too: Mixed_6d's
    is the graph's mixed_6/conv, the sFID features."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        one = self.branch1x1(x)
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for k in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{k}")(double)
        return torch.cat([one, seven, double, self.branch_pool(_avg_pool(x))], 1), one


class ReduceB(nn.Module):
    """Mixed_7a: 17 x 17 -> 8 x 8."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        seven = x
        for k in range(1, 5):
            seven = getattr(self, f"branch7x7x3_{k}")(seven)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class MixedE(nn.Module):
    """Mixed_7b, 7c (8 x 8): expanded 3x3 branches. The 2015 graph pools with an average in 7b
    and a maximum in 7c."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(three), self.branch3x3_2b(three),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(pooled)], 1)


class InceptionV3(nn.Module):
    """uint8 images (N, 3, H, W) -> {"pool": (N, 2048), "spatial": (N, 2023), "logits": (N, 1008)}."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = MixedA(192, 32), MixedA(256, 64), MixedA(288, 64)
        self.Mixed_6a = ReduceA(288)
        self.Mixed_6b, self.Mixed_6c = MixedC(768, 128), MixedC(768, 160)
        self.Mixed_6d, self.Mixed_6e = MixedC(768, 160), MixedC(768, 192)
        self.Mixed_7a = ReduceB(768)
        self.Mixed_7b, self.Mixed_7c = MixedE(1280, max_pool=False), MixedE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # only its weight is used: the evaluator's logits have no bias
        self.has_logits, self.weight_kind = True, None  # set by load_inception from the weight file

    def forward(self, images: torch.Tensor) -> dict:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: {tuple(images.shape)} {images.dtype}; expected uint8 (N, 3, H, W)")
        x = resize_like_tf1(images.float(), INPUT_SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        x = self.Mixed_6a(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        x, _ = self.Mixed_6b(x)
        x, _ = self.Mixed_6c(x)
        x, mixed_6_conv = self.Mixed_6d(x)
        x, _ = self.Mixed_6e(x)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        pool = x.mean(dim=(2, 3))
        # NHWC before slicing: the TensorFlow tensor's layout, which the stored mu_s / sigma_s follow
        spatial = mixed_6_conv.permute(0, 2, 3, 1)[..., :SPATIAL_CHANNELS].flatten(1)
        logits = pool @ self.fc.weight.T if self.has_logits else pool.new_zeros((len(pool), 0))
        return {"pool": pool, "spatial": spatial, "logits": logits}


def _online() -> bool:
    return reachable("github.com")


def find_weights(path: str = None, download: bool = True) -> str:
    """The weight file: `path`, else $MPDIT_INCEPTION_WEIGHTS, else torch's hub cache (downloaded
    there first when this machine reaches GitHub and `download`). ValueError naming the file and
    where it is published when there is none."""
    found, cached = find_weight_file(path, WEIGHTS_ENV, WEIGHTS_FILE, "inception_weights",
                                     f"torch-fidelity's {WEIGHTS_FILE}")
    if found:
        return found
    if download and _online():
        torch.hub.download_url_to_file(WEIGHTS_URL, cached, hash_prefix="6726825d", progress=True)
        return cached
    raise ValueError(f"no Inception weights: pass --inception-weights FILE or set {WEIGHTS_ENV}, with {WEIGHTS_FILE} "
                     f"from {WEIGHTS_URL} (or place it in {os.path.dirname(cached)})")


def file_digest(path: str, chunk: int = 1 << 24) -> str:
    """sha256 of a file's content (the feature cache's key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_inception(path: str = None, device="cpu") -> InceptionV3:
    """The network with the weights of `path` (see find_weights): torch-fidelity's converted state
    dict, or an NVIDIA TorchScript conversion (inception_weights); eval mode, fp32.
    `network.weight_kind` names the file's kind, `network.has_logits` whether it has the head."""
    path = find_weights(path)
    network = InceptionV3()
    try:
        state, kind, has_logits = read_inception_weights(path, network.state_dict())
    except ValueError:  # already names the file and what it lacks
        raise
    except Exception as error:  # a truncated or foreign file: say which
        raise ValueError(f"inception_weights={path!r}: not a readable weight file ({error})") from None
    try:
        network.load_state_dict(state)
    except (RuntimeError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"inception_weights={path!r}: not torch-fidelity's Inception weights ({first})") from None
    network.weight_kind, network.has_logits = kind, has_logits
    return network.to(device).eval().requires_grad_(False)
