"""Fused ops for MPDiT: each op defined once (mpdit_kernels.ops), run by the backend a model
picks (mpdit_kernels.backend: torch, triton, native or auto)."""
from mpdit_kernels import ops
from mpdit_kernels.attention import attention_paths
from mpdit_kernels.backend import BACKEND_NAMES, BACKENDS, Backend, Kernel, KernelUnavailable, get_backend

__all__ = ["BACKENDS", "BACKEND_NAMES", "Backend", "Kernel", "KernelUnavailable", "attention_paths", "get_backend",
           "ops"]
