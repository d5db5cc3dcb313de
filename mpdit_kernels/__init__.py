"""Fused kernels for MPDiT, with their plain PyTorch references, behind one backend switch."""
from mpdit_kernels._launch import KernelUnavailable
from mpdit_kernels.attention_dispatch import attention, attention_paths
from mpdit_kernels.backend import BACKENDS, CUDA_OPS, TORCH_OPS, TRITON_OPS, check_backend, resolve

__all__ = ["BACKENDS", "CUDA_OPS", "KernelUnavailable", "TORCH_OPS", "TRITON_OPS", "attention", "attention_paths",
           "check_backend", "resolve"]
