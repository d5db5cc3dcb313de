"""Triton, when it is installed; whether its kernels can run on given tensors; launch sizes.

Triton decides at decoration time whether @triton.jit builds GPU kernels or the
interpreter's Python versions, from TRITON_INTERPRET; it must be set before import.
Without Triton the package keeps working: `triton.jit` becomes a no-op so the kernel
files still import, and the backend reports itself unavailable.
"""
import os

import torch

try:
    import triton
    import triton.language as tl

    AVAILABLE = True
except ImportError:  # e.g. macOS: no Triton wheels
    AVAILABLE = False

    class _NoTriton:
        constexpr = None

        @staticmethod
        def jit(fn=None, **kwargs):
            return fn if fn is not None else (lambda f: f)

        @staticmethod
        def next_power_of_2(n):
            return 1 << (n - 1).bit_length()

        @staticmethod
        def cdiv(a, b):
            return -(-a // b)

        @staticmethod
        def autotune(configs, key, **kwargs):
            return lambda fn: fn

        @staticmethod
        def Config(kwargs, num_warps=4):
            return kwargs

    triton = tl = _NoTriton()

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
MAX_WIDTH = 16384  # one row of D elements is held in registers: past this the kernels would spill


def unavailable_reason(device=None, dtype=None):
    """Why the Triton kernels cannot run on `device` (None: whether they can run anywhere), or None."""
    if not AVAILABLE:
        return "Triton is not installed (pip install triton); use kernel_backend='torch' or 'auto'"
    kind = None if device is None else torch.device(device).type
    if kind == "cpu" and not INTERPRET:
        return ("got CPU tensors; Triton kernels need CUDA tensors, or TRITON_INTERPRET=1 set before import to run "
                "them on the CPU through Triton's interpreter")
    if kind not in (None, "cpu", "cuda"):
        return f"tensors on {device} are not supported; expected CUDA (or CPU with TRITON_INTERPRET=1)"
    return None


def row_contiguous(tensor):
    """The tensor itself when its rows are contiguous (any batch / token strides), else a copy."""
    return tensor if tensor is None or tensor.stride(-1) == 1 else tensor.contiguous()


def row_block(op: str, width: int) -> tuple:
    """(BLOCK, num_warps) for kernels that hold one row of `width` elements."""
    block = row_width(op, width)
    return block, min(max(block // 256, 1), 16)


def row_width(op: str, width: int) -> int:
    """The power-of-two BLOCK that holds a row of `width` elements (warps are the autotuner's)."""
    if width > MAX_WIDTH:
        raise ValueError(f"{op}: width {width} is larger than the {MAX_WIDTH} the Triton kernels support")
    return triton.next_power_of_2(width)


# The config index every autotuned kernel runs, instead of timing them all (tests set it to
# cover each config; MPDIT_TRITON_CONFIG=<index> pins one, e.g. for a short GPU test run).
# None: the GPU times every config, the interpreter (no timer) runs the last of each list,
# the tiled one with the most masking.
forced_config = int(os.environ["MPDIT_TRITON_CONFIG"]) if os.environ.get("MPDIT_TRITON_CONFIG") else None


def _quick_bench(kernel_call, quantiles):
    """Autotuning's timer: short runs (these kernels take well under a millisecond)."""
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=5, rep=25, quantiles=quantiles)


def _prune(configs, named_args, **kwargs):
    if forced_config is not None:
        return [configs[forced_config]]
    return [configs[-1]] if INTERPRET else configs


def autotune(configs: list, key: list):
    """triton.autotune over `configs` on a GPU, timed once per `key` value (and argument dtypes);
    under the interpreter, or with `forced_config` set, one config."""
    return triton.autotune(configs, key=key, do_bench=_quick_bench, prune_configs_by={"early_config_prune": _prune})
