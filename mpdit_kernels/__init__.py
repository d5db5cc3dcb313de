"""Kernels used by the MPDiT models. The plain PyTorch path lives here too, as the reference."""
from mpdit_kernels.attention import attention

__all__ = ["attention"]
