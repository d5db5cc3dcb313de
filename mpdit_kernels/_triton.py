"""Triton, when it is installed, and whether its kernels can run on CPU tensors.

Triton decides at decoration time whether @triton.jit builds GPU kernels or the
interpreter's Python versions, from TRITON_INTERPRET; it must be set before import.
Without Triton the reference implementations keep working: `triton.jit` becomes a no-op
so the op files still import, and the launchers refuse to run.
"""
import os

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

    triton = tl = _NoTriton()

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

__all__ = ["AVAILABLE", "INTERPRET", "tl", "triton"]
