"""The kernel backends a model switches between: the same ops, two implementations.

"torch": the plain PyTorch references (the numerics of record, and what torch.compile sees).
"triton": the fused Triton kernels (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1).
"cuda": the C++/CUDA extension mpdit_kernels._C (csrc/): its CUDA kernels on CUDA tensors,
    its C++ loops on CPU tensors. The FNO time embedding has no native version: torch's.
"auto": triton on CUDA tensors when Triton is installed, else the extension's CUDA kernels
    when built; torch on CPU tensors (measured faster there than the C++ loops, see README).
"""
import logging
from types import SimpleNamespace

from mpdit_kernels import adaln, fno, native, upsample
from mpdit_kernels._launch import KernelUnavailable, require_triton
from mpdit_kernels._triton import AVAILABLE
from mpdit_kernels.attention_dispatch import attention

BACKENDS = ("torch", "triton", "cuda", "auto")
logger = logging.getLogger("mpdit_kernels")

TORCH_OPS = SimpleNamespace(
    name="torch",
    adaln_modulate=adaln.adaln_modulate_ref,
    residual_adaln_modulate=adaln.residual_adaln_modulate_ref,
    upsample_shuffle_norm=upsample.upsample_shuffle_norm_ref,
    fine_entry=upsample.fine_entry_ref,
    fno_time_features=fno.fno_time_features_ref,
    attention=attention,
)
TRITON_OPS = SimpleNamespace(
    name="triton",
    adaln_modulate=adaln.adaln_modulate,
    residual_adaln_modulate=adaln.residual_adaln_modulate,
    upsample_shuffle_norm=upsample.upsample_shuffle_norm,
    fine_entry=upsample.fine_entry,
    fno_time_features=fno.fno_time_features,
    attention=attention,
)
CUDA_OPS = SimpleNamespace(
    name="cuda",
    adaln_modulate=native.adaln_modulate,
    residual_adaln_modulate=native.residual_adaln_modulate,
    upsample_shuffle_norm=native.upsample_shuffle_norm,
    fine_entry=native.fine_entry,
    fno_time_features=fno.fno_time_features_ref,
    attention=attention,
)
_fallback_logged = set()


def check_backend(name: str) -> str:
    """Validate a kernel_backend name when a model is built."""
    if name not in BACKENDS:
        raise ValueError(f"kernel_backend={name!r}: expected one of {BACKENDS}")
    if name == "triton" and not AVAILABLE:
        raise KernelUnavailable("kernel_backend='triton': Triton is not installed (pip install triton); "
                                "use kernel_backend='torch' or 'auto'")
    if name == "cuda" and not native.AVAILABLE:
        raise KernelUnavailable(f"kernel_backend='cuda': the native extension mpdit_kernels._C is not built; "
                                f"{native.BUILD_HINT}, or use kernel_backend='torch' or 'auto'")
    return name


def resolve(name: str, like):
    """The ops for backend `name` on tensors like `like`; an explicit 'triton' that cannot run raises."""
    if name == "torch":
        return TORCH_OPS
    if name == "triton":
        require_triton("kernel_backend='triton'", like)
        return TRITON_OPS
    if name == "cuda":
        native.require_native("kernel_backend='cuda'", like)
        return CUDA_OPS
    if AVAILABLE and like.is_cuda:
        return TRITON_OPS
    if native.WITH_CUDA and like.is_cuda:
        return CUDA_OPS
    reason = "neither Triton nor the CUDA extension is available" if like.is_cuda else f"tensors are on {like.device.type}"
    if reason not in _fallback_logged:
        _fallback_logged.add(reason)
        logger.info("kernel_backend='auto': using the torch ops (%s)", reason)
    return TORCH_OPS
