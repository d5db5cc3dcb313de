"""Checks and sizes shared by every kernel launcher."""
import torch

from mpdit_kernels._triton import AVAILABLE, INTERPRET, triton

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_WIDTH = 16384  # one row of D elements is held in registers: past this the kernels would spill


class KernelUnavailable(RuntimeError):
    """The Triton kernels cannot run on these tensors (no Triton, or CPU tensors without the interpreter)."""


def require_triton(op: str, tensor: torch.Tensor) -> None:
    if not AVAILABLE:
        raise KernelUnavailable(f"{op}: Triton is not installed; use kernel_backend='torch'")
    if tensor.device.type == "cpu" and not INTERPRET:
        raise KernelUnavailable(f"{op}: got CPU tensors; Triton kernels need CUDA tensors, or TRITON_INTERPRET=1 "
                                "set before import to run them on the CPU through Triton's interpreter")
    if tensor.device.type not in ("cpu", "cuda"):
        raise KernelUnavailable(f"{op}: tensors on {tensor.device} are not supported; expected CUDA (or CPU "
                                "with TRITON_INTERPRET=1)")


def row_contiguous(tensor):
    """The tensor itself when its rows are contiguous (any batch / token strides), else a copy."""
    return tensor if tensor is None or tensor.stride(-1) == 1 else tensor.contiguous()


def check_tensor(op: str, name: str, tensor, shape: tuple) -> None:
    """ValueError naming the op, the argument and what was expected."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a tensor, got {type(tensor).__name__}")
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{op}: {name} has dtype {tensor.dtype}, expected one of float32, bfloat16, float16")


def same_device(op: str, **tensors) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{op}: inputs on different devices: {devices}")


def row_block(op: str, width: int) -> tuple:
    """(BLOCK, num_warps) for kernels that hold one row of `width` elements."""
    if width > MAX_WIDTH:
        raise ValueError(f"{op}: width {width} is larger than the {MAX_WIDTH} these kernels support")
    block = triton.next_power_of_2(width)
    return block, min(max(block // 256, 1), 16)
