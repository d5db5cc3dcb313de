"""Multi-head attention for coarse and fine blocks, dispatched to the fastest path present.

Order: flash_attn (FlashAttention 2/3) when installed, then xformers when installed, then
PyTorch's scaled_dot_product_attention with the backend it chooses itself on CUDA (on an
H200 with torch 2.11, cuDNN's: forward + backward at MPDiT-XL's shapes in 0.45 and 2.3 ms
against 0.82 and 3.8 ms for its flash backend, `mpdit bench --sections profile`), its
flash kernel or the math path on a CPU. `attention_paths()` says which paths ran
(benchmarks print it). MPDIT_ATTENTION=flash_attn|xformers|sdpa|math forces one.
"""
import importlib.util
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

FUSED_PATHS = ("flash_attn", "xformers")  # libraries, tried in this order before SDPA
PATHS = FUSED_PATHS + ("sdpa", "math")
_used = set()
_installed = {}


def _is_installed(package: str) -> bool:
    if package not in _installed:
        _installed[package] = importlib.util.find_spec(package) is not None
    return _installed[package]


def attention_paths() -> list:
    """The paths attention calls took in this process, e.g. ['sdpa-flash']."""
    return sorted(_used)


def _fused_kernel_fits(q: torch.Tensor) -> bool:
    """flash_attn / xformers / SDPA-flash: CUDA, fp16 or bf16, head width a multiple of 8 up to 256."""
    head_dim = q.shape[-1]
    return q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and head_dim % 8 == 0 and head_dim <= 256


def choose_path(q: torch.Tensor) -> str:
    forced = os.environ.get("MPDIT_ATTENTION")
    if forced:
        if forced not in PATHS:
            raise ValueError(f"MPDIT_ATTENTION={forced!r}: expected one of {PATHS}")
        return forced
    return (fused_paths(q) or ["sdpa"])[0]


def fused_paths(q: torch.Tensor) -> list:
    """The installed libraries' paths (flash_attn, xformers) that take q, in preference order."""
    return [path for path in FUSED_PATHS if _fused_kernel_fits(q) and _is_installed(path)]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax attention. q, k, v: (B, heads, L, head_dim) -> (B, heads, L, head_dim)."""
    if torch.compiler.is_compiling():  # inductor picks SDPA's backend itself; no host-side bookkeeping
        return F.scaled_dot_product_attention(q, k, v)
    path = choose_path(q)
    if path in FUSED_PATHS:
        _used.add(path)
        return library_attention(path, q, k, v)
    if path == "math":
        backends, name = [SDPBackend.MATH], "sdpa-math"
    elif q.is_cuda:
        _used.add(f"sdpa-{sdpa_choice(q, k, v)}")
        return F.scaled_dot_product_attention(q, k, v)
    else:
        backends, name = [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH], f"sdpa-{q.device.type}"
    _used.add(name)
    with sdpa_kernel(backends):
        return F.scaled_dot_product_attention(q, k, v)


def library_attention(path: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """flash_attn's or xformers' kernel (one of FUSED_PATHS), called in their (B, L, heads, head_dim) layout."""
    if path == "flash_attn":
        from flash_attn import flash_attn_func as kernel
    else:
        from xformers.ops import memory_efficient_attention as kernel
    return kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


SDPA_NAMES = {SDPBackend.FLASH_ATTENTION: "flash", SDPBackend.CUDNN_ATTENTION: "cudnn",
              SDPBackend.EFFICIENT_ATTENTION: "efficient", SDPBackend.MATH: "math"}


def sdpa_choice(q, k, v) -> str:
    """The backend scaled_dot_product_attention picks for these inputs when none is forced."""
    choice = torch._fused_sdp_choice(q, k, v)
    return next((name for backend, name in SDPA_NAMES.items() if backend.value == choice), f"backend {choice}")
