"""The backend table: which implementation runs each fused op.

A `Backend` has one field per fused op, holding that implementation's `Kernel` (forward
and backward launchers), or None where the op's plain-PyTorch reference runs instead.
The ops themselves (schema, fake, autograd, reference) are defined once in
mpdit_kernels.ops; a backend only supplies launchers that keep the op's contract.

    "torch"   the references: the numerics of record, and what torch.compile fuses itself
    "triton"  the Triton kernels (mpdit_kernels/triton/): CUDA tensors, or CPU tensors
              with TRITON_INTERPRET=1 set before import
    "native"  the C++/CUDA extension (csrc/, mpdit_kernels._native): its CUDA kernels on
              CUDA tensors, its C++ loops on CPU tensors; the FNO embedding runs torch's
    "auto"    per call: triton on CUDA tensors, else native's CUDA kernels, else torch
              (torch on a CPU: the C++ loops only match eager there for a whole step)
"""
import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from mpdit_kernels import native
from mpdit_kernels.triton import adaln as triton_adaln
from mpdit_kernels.triton import fno as triton_fno
from mpdit_kernels.triton import runtime as triton_runtime
from mpdit_kernels.triton import upsample as triton_upsample

logger = logging.getLogger("mpdit_kernels")


class KernelUnavailable(RuntimeError):
    """A backend asked for by name cannot run here (not installed, not built, wrong device)."""


@dataclass(frozen=True)
class Kernel:
    """One implementation of one op: launchers with the signatures mpdit_kernels.ops documents."""

    forward: Callable
    backward: Optional[Callable] = None  # None: the op's autograd needs no kernel (fine_entry)


@dataclass(frozen=True)
class Backend:
    """One implementation of every fused op; a None field runs that op's reference."""

    name: str
    unavailable_reason: Callable  # (device or None, dtype or None) -> why it cannot run, or None
    adaln: Optional[Kernel] = None  # residual_adaln_modulate and adaln_modulate
    upsample: Optional[Kernel] = None  # upsample_shuffle_norm
    fine_entry: Optional[Kernel] = None
    fno: Optional[Kernel] = None  # fno_time_features

    def pick(self, tensor: torch.Tensor) -> "Backend":
        """The backend that runs on tensors like `tensor`: itself, or auto's choice."""
        return self if self.name != "auto" else _auto_choice(tensor)


def _runs_anywhere(device=None, dtype=None):
    return None


TORCH = Backend("torch", _runs_anywhere)
TRITON = Backend(
    "triton", triton_runtime.unavailable_reason,
    adaln=Kernel(triton_adaln.adaln_fwd, triton_adaln.adaln_bwd),
    upsample=Kernel(triton_upsample.upsample_fwd, triton_upsample.upsample_bwd),
    fine_entry=Kernel(triton_upsample.fine_entry_fwd),
    fno=Kernel(triton_fno.fno_fwd, triton_fno.fno_bwd))
NATIVE = Backend(
    "native", native.unavailable_reason,
    adaln=Kernel(native.adaln_fwd, native.adaln_bwd),
    upsample=Kernel(native.upsample_fwd, native.upsample_bwd),
    fine_entry=Kernel(native.fine_entry_fwd))
AUTO = Backend("auto", _runs_anywhere)  # each call picks one of the others
BACKENDS = {backend.name: backend for backend in (TORCH, TRITON, NATIVE, AUTO)}
BACKEND_NAMES = tuple(BACKENDS)
_auto_logged = set()


def _auto_choice(tensor: torch.Tensor) -> Backend:
    if tensor.is_cuda:
        for candidate in (TRITON, NATIVE):
            if candidate.unavailable_reason(tensor.device, tensor.dtype) is None:
                return candidate
    if tensor.device.type not in _auto_logged and not torch.compiler.is_compiling():
        _auto_logged.add(tensor.device.type)
        logger.info("kernel_backend='auto': using the torch ops on %s tensors", tensor.device.type)
    return TORCH


def get_backend(name) -> Backend:
    """The backend called `name`; ValueError for an unknown name, KernelUnavailable for one
    that is not installed or built. 'cuda', the old name of 'native', is accepted with a warning."""
    if isinstance(name, Backend):
        return name
    if name == "cuda":
        warnings.warn("kernel_backend='cuda' is deprecated and will be removed in mpdit 0.2: use 'native' "
                      "(the same C++/CUDA extension, on CPU and CUDA tensors)", FutureWarning, stacklevel=3)
        name = "native"
    if name not in BACKENDS:
        raise ValueError(f"kernel_backend={name!r}: expected one of {BACKEND_NAMES}")
    reason = BACKENDS[name].unavailable_reason(None, None)
    if reason is not None:
        raise KernelUnavailable(f"kernel_backend={name!r}: {reason}")
    return BACKENDS[name]


def require(backend_name: str, op: str, tensor: torch.Tensor) -> Backend:
    """The backend `backend_name`, checked against the tensors an op was given."""
    backend = BACKENDS[backend_name]
    reason = backend.unavailable_reason(tensor.device, tensor.dtype)
    if reason is not None:
        raise KernelUnavailable(f"{op} on kernel_backend={backend_name!r}: {reason}")
    return backend
