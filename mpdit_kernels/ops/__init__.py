"""The fused ops, each defined once (one file per op): its contract, plain-PyTorch reference,
argument checks, torch.library custom op with fake implementation and autograd formula,
and the function models call with a backend from mpdit_kernels.backend.

Every op takes mixed float inputs and returns eager PyTorch's promoted dtypes; gradients
come back in each input's dtype; statistics kept for the backward are float32.
"""
from mpdit_kernels.ops.adaln import (
    adaln_modulate,
    adaln_modulate_ref,
    residual_adaln_modulate,
    residual_adaln_modulate_ref,
)
from mpdit_kernels.ops.fine_entry import fine_entry, fine_entry_ref
from mpdit_kernels.ops.fno import fno_time_features, fno_time_features_ref
from mpdit_kernels.ops.upsample import upsample_shuffle_norm, upsample_shuffle_norm_ref

__all__ = ["adaln_modulate", "adaln_modulate_ref", "fine_entry", "fine_entry_ref", "fno_time_features",
           "fno_time_features_ref", "residual_adaln_modulate", "residual_adaln_modulate_ref", "upsample_shuffle_norm",
           "upsample_shuffle_norm_ref"]
