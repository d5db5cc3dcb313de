"""The C++/CUDA extension (csrc/, built by setup.py as mpdit_kernels._C): kernel_backend="cuda".

The same op contract as the Triton kernels: fused residual + AdaLN modulation, the fused
upsample and the fine-stage entry. On CUDA tensors they run the CUDA kernels (when the
extension was built with them), on CPU tensors the C++ loops (OpenMP through
at::parallel_for). The C++ ops take one dtype for all their inputs; the wrappers here
promote mixed inputs the way eager PyTorch would, so autograd sees the casts.
Fake implementations and autograd formulas are registered here, so torch.compile traces
each op as one node.
"""
import logging

import torch

from mpdit_kernels._launch import KernelUnavailable
from mpdit_kernels.adaln import EPS as ADALN_EPS, check_inputs as check_adaln, output_dtypes
from mpdit_kernels.upsample import EPS as UPSAMPLE_EPS, check_fine_entry, check_upsample, fine_entry_dtype

logger = logging.getLogger("mpdit_kernels")

try:
    from mpdit_kernels import _C

    AVAILABLE, WITH_CUDA = True, bool(_C.with_cuda)
except ImportError as error:  # built with MPDIT_NATIVE_BUILD=0, or installed with build isolation
    AVAILABLE, WITH_CUDA = False, False
    logger.info("mpdit_kernels._C is not built (%s): kernel_backend='cuda' is unavailable; "
                "`pip install --no-build-isolation -e .` builds it", error)

BUILD_HINT = "reinstall with `pip install --no-build-isolation -e .` (see setup.py)"


def require_native(op: str, tensor: torch.Tensor) -> None:
    """KernelUnavailable when the extension cannot run on tensors like `tensor`."""
    if not AVAILABLE:
        raise KernelUnavailable(f"{op}: the native extension mpdit_kernels._C is not built; {BUILD_HINT}")
    if tensor.device.type == "cuda" and not WITH_CUDA:
        raise KernelUnavailable(f"{op}: mpdit_kernels._C was built without CUDA kernels (no CUDA toolkit or a CPU "
                                f"build of torch at install time); {BUILD_HINT} on a machine with nvcc")
    if tensor.device.type not in ("cpu", "cuda"):
        raise KernelUnavailable(f"{op}: tensors on {tensor.device} are not supported; expected CPU or CUDA")


NATIVE_MAX_WIDTH = 4096  # csrc/checks.h kMaxWidth: the CUDA kernels cache rows in shared memory


def _check_width(op: str, width: int) -> None:
    if width > NATIVE_MAX_WIDTH:
        raise ValueError(f"{op}: width {width} is larger than the {NATIVE_MAX_WIDTH} the extension's kernels support")


# --------------------------------------------------------------------------- registration
if AVAILABLE:
    ops = torch.ops.mpdit_ext

    @torch.library.register_fake("mpdit_ext::residual_adaln_modulate")
    def _(x, y, gate, shift, scale, eps):
        stats = x.new_empty(x.shape[:2], dtype=torch.float32)
        return x.new_empty(x.shape), x.new_empty(x.shape), stats, torch.empty_like(stats)

    @torch.library.register_fake("mpdit_ext::adaln_modulate")
    def _(x, shift, scale, eps):
        stats = x.new_empty(x.shape[:2], dtype=torch.float32)
        return x.new_empty(x.shape), stats, torch.empty_like(stats)

    @torch.library.register_fake("mpdit_ext::residual_adaln_modulate_backward")
    def _(x, y, gate, scale, mean, rstd, dx_out, dh):
        return x.new_empty(x.shape), x.new_empty(x.shape), *(scale.new_empty(scale.shape) for _ in range(3))

    @torch.library.register_fake("mpdit_ext::adaln_modulate_backward")
    def _(x, scale, mean, rstd, dh):
        return x.new_empty(x.shape), scale.new_empty(scale.shape), scale.new_empty(scale.shape)

    @torch.library.register_fake("mpdit_ext::upsample_shuffle_norm")
    def _(wide, cls, ratio, grid_h, grid_w, eps):
        B, M, D = cls.shape
        L = M + ratio * ratio * grid_h * grid_w
        stats = wide.new_empty((B, L), dtype=torch.float32)
        return wide.new_empty((B, L, D)), stats, torch.empty_like(stats)

    @torch.library.register_fake("mpdit_ext::upsample_shuffle_norm_backward")
    def _(wide, cls, mean, rstd, dout, ratio, grid_w):
        return wide.new_empty(wide.shape), cls.new_empty(cls.shape)

    @torch.library.register_fake("mpdit_ext::fine_entry")
    def _(refined, skip, pos):
        return refined.new_empty(refined.shape)

    def _residual_setup(ctx, inputs, output):
        x, y, gate, shift, scale, eps = inputs
        ctx.save_for_backward(x, y, gate, scale, output[2], output[3])

    def _residual_backward(ctx, dx_out, dh, dmean, drstd):
        x, y, gate, scale, mean, rstd = ctx.saved_tensors
        dx_out = torch.zeros_like(x) if dx_out is None else dx_out
        dh = torch.zeros_like(x) if dh is None else dh
        return *ops.residual_adaln_modulate_backward(x, y, gate, scale, mean, rstd, dx_out, dh), None

    def _plain_setup(ctx, inputs, output):
        x, shift, scale, eps = inputs
        ctx.save_for_backward(x, scale, output[1], output[2])

    def _plain_backward(ctx, dh, dmean, drstd):
        x, scale, mean, rstd = ctx.saved_tensors
        return *ops.adaln_modulate_backward(x, scale, mean, rstd, dh), None

    def _upsample_setup(ctx, inputs, output):
        wide, cls, ratio, grid_h, grid_w, eps = inputs
        ctx.ratio, ctx.grid_w = ratio, grid_w
        ctx.save_for_backward(wide, cls, output[1], output[2])

    def _upsample_backward(ctx, dout, dmean, drstd):
        wide, cls, mean, rstd = ctx.saved_tensors
        return *ops.upsample_shuffle_norm_backward(wide, cls, mean, rstd, dout, ctx.ratio, ctx.grid_w), None, None, \
            None, None

    def _fine_entry_setup(ctx, inputs, output):
        refined, skip, pos = inputs
        ctx.image_tokens, ctx.has_skip = pos.shape[0], skip is not None

    def _fine_entry_backward(ctx, dout):
        # The gradient only routes (refined gets all of it, skip and pos the image rows): no kernel.
        image = dout[:, dout.shape[1] - ctx.image_tokens:]
        return dout, image if ctx.has_skip else None, image.sum(0) if ctx.needs_input_grad[2] else None

    torch.library.register_autograd("mpdit_ext::residual_adaln_modulate", _residual_backward,
                                    setup_context=_residual_setup)
    torch.library.register_autograd("mpdit_ext::adaln_modulate", _plain_backward, setup_context=_plain_setup)
    torch.library.register_autograd("mpdit_ext::upsample_shuffle_norm", _upsample_backward,
                                    setup_context=_upsample_setup)
    torch.library.register_autograd("mpdit_ext::fine_entry", _fine_entry_backward, setup_context=_fine_entry_setup)


# --------------------------------------------------------------------------- the ops
def residual_adaln_modulate(x, y, gate, shift, scale):
    """(x + gate * y, LayerNorm(x + gate * y) * (1 + scale) + shift); x, y (B, L, D), gate/shift/scale (B, D)."""
    op = "residual_adaln_modulate"
    check_adaln(op, x, y, gate, shift, scale)
    _check_width(op, x.shape[-1])
    require_native(op, x)
    x_out_dtype, common = output_dtypes(x, y, gate, shift, scale)
    x_out, h, _, _ = torch.ops.mpdit_ext.residual_adaln_modulate(
        *(t.to(common) for t in (x, y, gate, shift, scale)), ADALN_EPS)
    return x_out.to(x_out_dtype), h


def adaln_modulate(x, shift, scale):
    """LayerNorm(x) * (1 + scale) + shift; x (B, L, D), shift/scale (B, D)."""
    op = "adaln_modulate"
    check_adaln(op, x, None, None, shift, scale)
    _check_width(op, x.shape[-1])
    require_native(op, x)
    common = output_dtypes(x, None, None, shift, scale)[1]
    return torch.ops.mpdit_ext.adaln_modulate(x.to(common), shift.to(common), scale.to(common), ADALN_EPS)[0]


def upsample_shuffle_norm(wide, cls, ratio: int, grid_h: int, grid_w: int):
    """LayerNorm(cat(cls, GELU(pixel_shuffle(wide)))); wide (B, h*w, r*r*D), cls (B, m, D) -> (B, m + r*r*h*w, D)."""
    op = "upsample_shuffle_norm"
    _check_width(op, check_upsample(wide, cls, ratio, grid_h, grid_w)[1])
    require_native(op, wide)
    common = torch.promote_types(wide.dtype, cls.dtype)
    return torch.ops.mpdit_ext.upsample_shuffle_norm(wide.to(common), cls.to(common), ratio, grid_h, grid_w,
                                                     UPSAMPLE_EPS)[0]


def fine_entry(refined, skip, pos):
    """refined with skip + pos added to its last N (image) tokens; skip (B, N, D) or None, pos (N, D)."""
    op = "fine_entry"
    check_fine_entry(refined, skip, pos)
    _check_width(op, refined.shape[-1])
    require_native(op, refined)
    common = fine_entry_dtype(refined, skip, pos)
    return torch.ops.mpdit_ext.fine_entry(refined.to(common), None if skip is None else skip.to(common),
                                          pos.to(common))
