"""Where a training step's time goes: torch.profiler over a few steps, each kernel in a category.

The step's span on the device (first kernel start to last kernel end) is split into
GEMM, attention, the fused ops, other element-wise / reduction kernels, optimizer
(gradient clipping and AdamW), EMA, and idle gaps (the span no kernel covers). On a GPU
the timeline is the CUDA kernels; on a CPU, the operators. The optimizer and EMA are
the kernels inside the `mpdit.optimizer` / `mpdit.ema` ranges the step records.
The CPU figures (each operator's self time, idle = the rest of the span: Python, the
autograd engine) only exercise the code; read the GPU's.
"""
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from mpdit.bench.timing import synchronize
from mpdit.training.step import EMA_RANGE, OPTIMIZER_RANGE

CATEGORIES = ("gemm", "attention", "fused ops", "other kernels", "optimizer", "ema", "idle")
RANGES = {OPTIMIZER_RANGE: "optimizer", EMA_RANGE: "ema"}

# Substrings of kernel (GPU) or operator (CPU) names, checked in this order. Fused ops: the Triton
# kernels (_adaln_fwd_kernel, ...), the extension's CUDA kernels, the ops on a CPU (mpdit::...).
# Optimizer and EMA by name too: where the profiler records no GPU range (it depends on CUPTI).
NEEDLES = (("attention", ("flash", "fmha", "attention", "sdpa", "cudnn_generated", "attn")),
           ("fused ops", ("_adaln_", "_upsample_", "_fine_entry_", "_fno_", "adaln_", "upsample_", "fine_entry_",
                          "mpdit::")),
           ("gemm", ("gemm", "xmma", "cutlass", "nvjet", "wgmma", "cublas", "splitk", "triton_tem_", "aten::mm",
                     "aten::addmm", "aten::bmm", "scaled_mm", "matmul", "aten::linear", "convolution", "conv")),
           ("optimizer", ("adam", "lpnorm", "norm_cleanup")), ("ema", ("lerp",)))
# Inductor's generated element-wise / reduction kernels are named after the ops they fuse,
# ours included (triton_poi_fused__to_copy_residual_adaln_modulate_backward_...): theirs, not ours.
_INDUCTOR = ("triton_poi_", "triton_red_", "triton_per_")


def classify(name: str) -> str:
    """The category of one kernel or operator, from its name."""
    lowered = name.lower()
    if not lowered.startswith(_INDUCTOR):
        for category, needles in NEEDLES:
            if any(needle in lowered for needle in needles):
                return category
    return "other kernels"


def profile_step(step, device: str, steps: int = 2, trace_path: str = None) -> dict:
    """{category: ms per step, 'step_ms': device span per step, 'top': [(name, ms per step)]}
    for `steps` calls of step() after one warm-up call; the Chrome trace gzipped to trace_path."""
    step()
    synchronize(device)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    if trace_path:
        prof.export_chrome_trace(trace_path)  # gzipped by torch: the path ends in .gz
    return breakdown_of(prof.events(), device, steps)


def breakdown_of(events, device: str, steps: int) -> dict:
    kind = DeviceType.CUDA if device == "cuda" else DeviceType.CPU
    windows = [(RANGES[e.name], e.time_range.start, e.time_range.end) for e in events
               if e.name in RANGES and e.device_type == kind]
    # GPU: every kernel, its whole duration. CPU: every operator, its self time (its children
    # count for themselves), so nothing is counted twice.
    timeline = [e for e in events if e.device_type == kind and not getattr(e, "is_user_annotation", False)
                and e.name not in RANGES]
    totals, per_name = dict.fromkeys(CATEGORIES, 0.0), {}
    for event in timeline:
        start, end = event.time_range.start, event.time_range.end
        ms = (end - start if device == "cuda" else event.self_cpu_time_total) / 1e3
        category = next((c for c, lo, hi in windows if lo <= (start + end) / 2 <= hi), None) or \
            _category(event, device)
        totals[category] += ms
        per_name[event.name] = per_name.get(event.name, 0.0) + ms
    intervals = sorted((e.time_range.start, e.time_range.end) for e in timeline)
    span_ms = (max(end for _, end in intervals) - intervals[0][0]) / 1e3 if intervals else 0.0
    totals["idle"] = span_ms - _busy(intervals) if device == "cuda" else max(span_ms - sum(totals.values()), 0.0)
    top = sorted(per_name.items(), key=lambda item: -item[1])[:12]
    return {**{category: totals[category] / steps for category in CATEGORIES}, "step_ms": span_ms / steps,
            "top": [(name, ms / steps) for name, ms in top]}


def _category(event, device: str) -> str:
    """A GPU kernel by its name; a CPU operator by its outermost classified caller
    (aten::empty inside mpdit::adaln_modulate is the fused op's time)."""
    if device == "cuda":
        return classify(event.name)
    chain = []
    while event is not None:
        chain.append(event.name)
        event = event.cpu_parent
    return next((classify(name) for name in reversed(chain) if name not in RANGES
                 and classify(name) != "other kernels"), "other kernels")


def _busy(intervals) -> float:
    """ms covered by at least one of the (sorted) intervals."""
    busy, reached = 0.0, float("-inf")
    for start, end in intervals:
        busy += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    return busy / 1e3
