"""Argument checks shared by the op definitions: ValueErrors that name the op, the argument
and what was expected, raised before any implementation runs."""
import torch

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def describe(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_rank(op: str, name: str, tensor, dim: int, layout: str) -> tuple:
    """The shape of `tensor`, a `dim`-dimensional tensor laid out as `layout`."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != dim:
        raise ValueError(f"{op}: {name} must be a {layout} tensor, got {describe(tensor)}")
    return tuple(tensor.shape)


def check_tensor(op: str, name: str, tensor, shape: tuple, dtypes=SUPPORTED_DTYPES) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a tensor, got {type(tensor).__name__}")
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    if tensor.dtype not in dtypes:
        expected = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{op}: {name} has dtype {tensor.dtype}, expected {'one of ' if len(dtypes) > 1 else ''}"
                         f"{expected}")


def same_device(op: str, **tensors) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{op}: inputs on different devices: {devices}")


def promoted(*tensors) -> torch.dtype:
    """Eager PyTorch's result dtype for an element-wise op over `tensors` (None skipped): every
    op takes mixed float inputs (an fp32 residual stream with bf16 branches under autocast)."""
    result = None
    for tensor in tensors:
        if tensor is not None and tensor.dtype != result:
            result = tensor.dtype if result is None else torch.promote_types(result, tensor.dtype)
    return result
