"""The fine stage's entry (docs/model.md, step 8), defined once: the refine output plus, on its N
image tokens, the skip projection of the input and the fine position table.

    out[:, :m] = refined[:, :m];  out[:, m:] = refined[:, m:] + skip + pos

Contract every implementation keeps (Backend.fine_entry):
    refined (B, m + N, D) (class tokens first); skip (B, N, D) or None (the no-skip
    ablation); pos (N, D). float32, bfloat16 or float16, mixed allowed; out like refined
    in the promoted dtype. Nothing is saved: the gradient only routes (refined gets all
    of it, skip and pos the image rows), so the op's backward runs views and one sum.
    forward(refined, skip | None, pos) -> out
"""
from typing import Optional

import torch

from mpdit_kernels.backend import TORCH, Backend, require
from mpdit_kernels.checks import check_rank, check_tensor, promoted, same_device

Tensor = torch.Tensor


# --------------------------------------------------------------------------- reference
def fine_entry_ref(refined, skip, pos):
    """Plain PyTorch: the torch backend, and what tests and benchmarks compare against."""
    m = refined.shape[1] - pos.shape[0]
    image = refined[:, m:] + pos if skip is None else refined[:, m:] + skip + pos
    return torch.cat([refined[:, :m], image], dim=1)


def check_inputs(refined, skip, pos) -> None:
    """ValueError for shapes, dtypes or devices no implementation takes."""
    op = "fine_entry"
    B, L, D = check_rank(op, "refined", refined, 3, "(B, tokens, channels)")
    check_tensor(op, "refined", refined, (B, L, D))
    N = check_rank(op, "pos", pos, 2, "(N, D)")[0]
    check_tensor(op, "pos", pos, (N, D))
    if skip is not None:
        check_tensor(op, "skip", skip, (B, N, D))
    if N > L:
        raise ValueError(f"{op}: pos has {N} tokens, more than refined's {L}")
    same_device(op, refined=refined, skip=skip, pos=pos)


# --------------------------------------------------------------------------- registration
@torch.library.custom_op("mpdit::fine_entry", mutates_args=())
def _fine_entry_op(refined: Tensor, skip: Optional[Tensor], pos: Tensor, backend: str) -> Tensor:
    return require(backend, "fine_entry", refined).fine_entry.forward(refined, skip, pos)


@_fine_entry_op.register_fake
def _(refined, skip, pos, backend):
    return refined.new_empty(refined.shape, dtype=promoted(refined, skip, pos))


def _fine_entry_setup(ctx, inputs, output):
    refined, skip, pos, backend = inputs
    ctx.image_tokens, ctx.has_skip = pos.shape[0], skip is not None


def _fine_entry_backward(ctx, dout):  # autograd casts each gradient to its input's dtype
    image = dout[:, dout.shape[1] - ctx.image_tokens:]
    dpos = image.sum(0) if ctx.needs_input_grad[2] else None  # pos is frozen in the models
    return dout, image if ctx.has_skip else None, dpos, None


_fine_entry_op.register_autograd(_fine_entry_backward, setup_context=_fine_entry_setup)


# --------------------------------------------------------------------------- the op
def fine_entry(refined, skip, pos, backend: Backend = TORCH):
    """refined (B, m + N, D) with skip (B, N, D) or None, and pos (N, D), added to its last N tokens."""
    check_inputs(refined, skip, pos)  # every backend, the reference too
    impl = backend.pick(refined)
    if impl.fine_entry is None:
        return fine_entry_ref(refined, skip, pos)
    return _fine_entry_op(refined, skip, pos, impl.name)
