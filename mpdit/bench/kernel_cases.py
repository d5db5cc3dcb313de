"""Microbenchmarks of each fused op against eager PyTorch and torch.compile.

On a GPU each call is replayed from a CUDA graph, so the figures are device time (timed from the
host, a call at the coarse shape measures its launch cost instead).
Bytes are the fewest each op must move (each input read once, each output written once);
GB/s = bytes / median time; % of copy is against a device-to-device copy timed in the
same run. One setup_<case>(B, D, dtype, device, provider) per case returns the forward
call, the inputs that get gradients, and the bytes of the forward and of the backward.
"""
import torch

from mpdit.bench.providers import on_backend
from mpdit.bench.results import Shape, dtype_name
from mpdit.bench.timing import time_call
from mpdit_kernels import ops

PROVIDERS = ("torch", "compile", "native", "triton")  # the last is the one the others are quoted against


def leaf(shape, dtype, device, scale=1.0):
    return (scale * torch.randn(shape, device=device, dtype=torch.float32)).to(dtype).requires_grad_()


# One setup_<case>(B, D, dtype, device, provider) per case: returns (forward fn, inputs, bytes fwd, bytes bwd).
def setup_residual_adaln(B, D, dtype, device, provider, tokens):
    x, y = leaf((B, tokens, D), dtype, device), leaf((B, tokens, D), dtype, device)
    gate, shift, scale = (leaf((B, D), dtype, device, 0.5) for _ in range(3))
    fn = on_backend(provider, ops.residual_adaln_modulate)
    size = B * tokens * D * x.element_size()
    return (lambda: fn(x, y, gate, shift, scale)), [x, y, gate, shift, scale], 4 * size, 6 * size


def setup_adaln(B, D, dtype, device, provider, tokens):
    x = leaf((B, tokens, D), dtype, device)
    shift, scale = (leaf((B, D), dtype, device, 0.5) for _ in range(2))
    fn = on_backend(provider, ops.adaln_modulate)
    size = B * tokens * D * x.element_size()
    return (lambda: fn(x, shift, scale)), [x, shift, scale], 2 * size, 3 * size


def setup_upsample(B, D, dtype, device, provider, grid=8, class_tokens=16):
    wide = leaf((B, grid * grid, 4 * D), dtype, device)
    cls = leaf((B, class_tokens, D), dtype, device)
    fn = on_backend(provider, ops.upsample_shuffle_norm)
    element = wide.element_size()
    read = (wide.numel() + cls.numel()) * element
    written = B * (class_tokens + 4 * grid * grid) * D * element
    return (lambda: fn(wide, cls, 2, grid, grid)), [wide, cls], read + written, 2 * read + written


def setup_fine_entry(B, D, dtype, device, provider, image_tokens=256, class_tokens=16):
    refined = leaf((B, class_tokens + image_tokens, D), dtype, device)
    skip = leaf((B, image_tokens, D), dtype, device)
    pos = torch.randn(image_tokens, D, device=device, dtype=dtype)
    fn = on_backend(provider, ops.fine_entry)
    element = refined.element_size()
    moved = (2 * refined.numel() + skip.numel()) * element
    return (lambda: fn(refined, skip, pos)), [refined, skip], moved, None  # backward only routes views


def setup_fno(B, D, dtype, device, provider):
    layers, width, modes, points = 3, 32, 16, 32
    t = torch.rand(B, device=device)
    grid = torch.linspace(-1, 1, points, device=device)
    params = [leaf((width, 1), torch.float32, device), leaf((width,), torch.float32, device),
              leaf((layers, width, width, modes, 2), torch.float32, device, 0.05),
              leaf((layers, width, width), torch.float32, device, 0.2), leaf((layers, width), torch.float32, device)]
    fn = on_backend(provider, ops.fno_time_features)  # native has no FNO kernel: its reference
    return (lambda: fn(t, grid, *params)), params, None, None  # launch-bound: time only


# Ops whose backward launches no kernel of its own (autograd routes views): no speed ratio.
NO_BACKWARD_KERNEL = ("fine_entry",)

CASES = {
    "residual_adaln_modulate/coarse": lambda *a: setup_residual_adaln(*a, tokens=80),
    "residual_adaln_modulate/fine": lambda *a: setup_residual_adaln(*a, tokens=272),
    "adaln_modulate/fine": lambda *a: setup_adaln(*a, tokens=272),
    "upsample_shuffle_norm": setup_upsample,
    "fine_entry": setup_fine_entry,
    "fno_time_features": setup_fno,
}


def bench_kernels(plan, case, results, ceilings) -> None:
    """Forward and backward of one op at one width on each kernel provider of the plan: time,
    GB/s and % of the device copy as rows."""
    batch, dtype, device = plan.preset.kernel_batch, plan.dtype, plan.device
    shape = Shape(batch=batch, width=case.width, dtype=dtype_name(dtype))
    for provider in plan.kernel_providers:
        forward, inputs, bytes_fwd, bytes_bwd = CASES[case.op](batch, case.width, dtype, device, provider)
        outputs = forward()
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        grads = [torch.randn_like(o) for o in outputs]

        def backward():
            torch.autograd.grad(outputs, inputs, grads, retain_graph=True)

        for mode, fn, moved in (("forward", forward, bytes_fwd), ("backward", backward, bytes_bwd)):
            timing = _device_time(fn, device, plan.preset.reps)
            for metric, value in timing.items():
                results.add(case.op, provider, mode, metric, "ms" if metric.endswith("_ms") else "-", shape, value)
            if moved:
                gbs = moved / (timing["median_ms"] * 1e-3) / 1e9
                results.add(case.op, provider, mode, "bandwidth", "GB/s", shape, gbs)
                results.add(case.op, provider, mode, "copy_fraction", "%", shape, 100 * gbs / ceilings.copy_gbs)


def _device_time(fn, device, min_reps) -> dict:
    """The op's device time: replayed from a CUDA graph on a GPU (the host's launch cost of one
    op call, ~0.1-0.2 ms through the dispatcher, exceeds the coarse shape's kernel time), or
    timed plainly where it cannot be captured (the row says which: cuda_graph 1 or 0)."""
    if device == "cuda":
        try:
            return {**time_call(fn, device, graph=True), "cuda_graph": 1.0}
        except RuntimeError:
            torch.cuda.synchronize()
    return {**time_call(fn, device, min_reps=min_reps), "cuda_graph": 0.0}
