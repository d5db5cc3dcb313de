"""The native extension: csrc/ built by setup.py as mpdit_kernels._native (ops torch.ops.mpdit_native.*).

Launchers with the signatures the op definitions (mpdit_kernels/ops/) call: CUDA kernels on
CUDA tensors, C++ loops (OpenMP through at::parallel_for) on CPU tensors. The C++ ops take
one dtype for all their inputs, so these launchers cast mixed inputs to the promoted
dtype on the way in and the gradients back to each input's dtype on the way out.
"""
import logging

import torch

from mpdit_kernels.checks import promoted

logger = logging.getLogger("mpdit_kernels")
BUILD_HINT = "reinstall with `pip install --no-build-isolation -e .` (see setup.py)"

try:
    from mpdit_kernels import _native

    AVAILABLE, WITH_CUDA = True, bool(_native.with_cuda)
except ImportError as error:  # built with MPDIT_NATIVE_BUILD=0, or installed with build isolation
    AVAILABLE, WITH_CUDA = False, False
    logger.info("the native extension mpdit_kernels._native is not built (%s): kernel_backend='native' is "
                "unavailable; %s", error, BUILD_HINT)

MAX_WIDTH = 4096  # csrc/checks.h kMaxWidth: the CUDA kernels cache rows in shared memory


def unavailable_reason(device=None, dtype=None):
    """Why the extension cannot run on `device` (None: whether it can run anywhere), or None."""
    if not AVAILABLE:
        return f"the native extension mpdit_kernels._native is not built; {BUILD_HINT}"
    kind = None if device is None else torch.device(device).type
    if kind == "cuda" and not WITH_CUDA:
        return (f"the native extension was built without its CUDA kernels (no CUDA toolkit or a CPU build of torch "
                f"at install time); {BUILD_HINT} on a machine with nvcc")
    if kind not in (None, "cpu", "cuda"):
        return f"tensors on {device} are not supported; expected CPU or CUDA"
    return None


def _check_width(op: str, width: int) -> None:
    if width > MAX_WIDTH:
        raise ValueError(f"{op}: width {width} is larger than the {MAX_WIDTH} the native extension's kernels support")


def _cast(dtype, *tensors):
    return [t if t is None or t.dtype == dtype else t.to(dtype) for t in tensors]


# --------------------------------------------------------------------------- launchers
def adaln_fwd(x, y, gate, shift, scale, eps, h_dtype):
    _check_width("adaln_modulate", x.shape[-1])
    common, x_out_dtype = promoted(x, y, gate, shift, scale), promoted(x, y, gate)
    x, y, gate, shift, scale = _cast(common, x, y, gate, shift, scale)
    if y is None:
        h, mean, rstd = torch.ops.mpdit_native.adaln_modulate(x, shift, scale, eps)
        return None, h.to(h_dtype), mean, rstd  # the kernels write the common dtype: cast after
    x_out, h, mean, rstd = torch.ops.mpdit_native.residual_adaln_modulate(x, y, gate, shift, scale, eps)
    return x_out.to(x_out_dtype), h.to(h_dtype), mean, rstd


def adaln_bwd(x, y, gate, scale, mean, rstd, dx_out, dh):
    input_dtypes = [None if t is None else t.dtype for t in (x, y, gate, scale, scale)]
    common = promoted(x, y, gate, scale, dh)
    x, y, gate, scale, dx_out, dh = _cast(common, x, y, gate, scale, dx_out, dh)
    if y is None:
        dx, dshift, dscale = torch.ops.mpdit_native.adaln_modulate_backward(x, scale, mean, rstd, dh)
        grads = (dx, None, None, dshift, dscale)
    else:
        grads = torch.ops.mpdit_native.residual_adaln_modulate_backward(x, y, gate, scale, mean, rstd, dx_out, dh)
    return tuple(None if g is None else g.to(dtype) for g, dtype in zip(grads, input_dtypes))


def upsample_fwd(wide, cls, ratio, grid_h, grid_w, eps):
    _check_width("upsample_shuffle_norm", cls.shape[-1])
    common = promoted(wide, cls)
    return torch.ops.mpdit_native.upsample_shuffle_norm(wide.to(common), cls.to(common), ratio, grid_h, grid_w, eps)


def upsample_bwd(wide, cls, mean, rstd, dout, ratio, grid_w):
    common = promoted(wide, cls, dout)
    dwide, dcls = torch.ops.mpdit_native.upsample_shuffle_norm_backward(
        wide.to(common), cls.to(common), mean, rstd, dout.to(common), ratio, grid_w)
    return dwide.to(wide.dtype), dcls.to(cls.dtype)


def fine_entry_fwd(refined, skip, pos):
    _check_width("fine_entry", refined.shape[-1])
    common = promoted(refined, skip, pos)
    refined, skip, pos = _cast(common, refined, skip, pos)
    return torch.ops.mpdit_native.fine_entry(refined, skip, pos)
