"""Where a training step's time goes: torch.profiler over a few steps, each kernel in a category.

The step's span on the device (first kernel start to last kernel end) is split into
GEMM, attention, the fused ops, other element-wise / reduction kernels, optimizer
(gradient clipping and AdamW), EMA, and idle gaps (the span no kernel covers). On a GPU
the timeline is the CUDA kernels; on a CPU, the operators. The optimizer and EMA are
the kernels inside the `mpdit.optimizer` / `mpdit.ema` ranges the step records.
The CPU figures (each operator's self time, idle = the rest of the span: Python, the
autograd engine) only exercise the code; read the GPU's.
"""
import gzip
import os
import shutil
import tempfile

from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from mpdit.bench.timing import synchronize
from mpdit.training.step import EMA_RANGE, OPTIMIZER_RANGE

CATEGORIES = ("gemm", "attention", "fused ops", "other kernels", "optimizer", "ema", "idle")
RANGES = {OPTIMIZER_RANGE: "optimizer", EMA_RANGE: "ema"}

# Substrings of kernel (GPU) or operator (CPU) names, checked in this order.
_ATTENTION = ("flash", "fmha", "attention", "sdpa", "cudnn_generated", "attn")
_GEMM = ("gemm", "xmma", "cutlass", "nvjet", "wgmma", "cublas", "splitk", "triton_tem_", "aten::mm",
         "aten::addmm", "aten::bmm", "scaled_mm", "matmul", "aten::linear", "convolution", "conv")
# Triton kernels (_adaln_fwd_kernel, ...), the extension's CUDA kernels, the ops on a CPU (mpdit::...)
_FUSED = ("_adaln_", "_upsample_", "_fine_entry_", "_fno_", "adaln_", "upsample_", "fine_entry_", "mpdit::")


# Where the profiler records no GPU range (it depends on the CUPTI version): the optimizer's
# and EMA's foreach kernels by name.
_OPTIMIZER = ("adam", "lpnorm", "norm_cleanup")
_EMA = ("lerp",)


# Inductor's generated element-wise / reduction kernels are named after the ops they fuse,
# ours included (triton_poi_fused__to_copy_residual_adaln_modulate_backward_...): theirs, not ours.
_INDUCTOR = ("triton_poi_", "triton_red_", "triton_per_")


def classify(name: str) -> str:
    """The category of one kernel or operator, from its name."""
    lowered = name.lower()
    if lowered.startswith(_INDUCTOR):
        return "other kernels"
    for category, needles in (("attention", _ATTENTION), ("fused ops", _FUSED), ("gemm", _GEMM),
                              ("optimizer", _OPTIMIZER), ("ema", _EMA)):
        if any(needle in lowered for needle in needles):
            return category
    return "other kernels"


def profile_step(step, device: str, steps: int = 2, trace_path: str = None) -> dict:
    """{category: ms per step, 'step_ms': device span per step, 'top': [(name, ms per step)]}
    for `steps` calls of step() after one warm-up call; the Chrome trace gzipped to trace_path."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    step()
    synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    breakdown = breakdown_of(prof.events(), device, steps)
    if trace_path:
        _export_gzipped(prof, trace_path)
    return breakdown


def breakdown_of(events, device: str, steps: int) -> dict:
    kind = DeviceType.CUDA if device == "cuda" else DeviceType.CPU
    windows = [(RANGES[e.name], e.time_range.start, e.time_range.end) for e in events
               if e.name in RANGES and e.device_type == kind]
    # GPU: every kernel, its whole duration. CPU: every operator, its self time (its children
    # count for themselves), so nothing is counted twice.
    timeline = [e for e in events if e.device_type == kind and not getattr(e, "is_user_annotation", False)
                and e.name not in RANGES]
    totals = dict.fromkeys(CATEGORIES, 0.0)
    per_name = {}
    intervals = []
    for event in timeline:
        start, end = event.time_range.start, event.time_range.end
        ms = (end - start if device == "cuda" else event.self_cpu_time_total) / 1e3
        middle = (start + end) / 2
        category = next((c for c, lo, hi in windows if lo <= middle <= hi), None) or _category(event, device)
        totals[category] += ms
        per_name[event.name] = per_name.get(event.name, 0.0) + ms
        intervals.append((start, end))
    span_ms = _span(intervals)
    totals["idle"] = max(span_ms - sum(totals.values()), 0.0) if device != "cuda" else span_ms - _busy(intervals)
    result = {category: totals[category] / steps for category in CATEGORIES}
    result["step_ms"] = span_ms / steps
    top = sorted(per_name.items(), key=lambda item: -item[1])[:12]
    result["top"] = [(name, ms / steps) for name, ms in top]
    return result


def _category(event, device: str) -> str:
    """A GPU kernel by its name; a CPU operator by its outermost classified caller
    (aten::empty inside mpdit::adaln_modulate is the fused op's time)."""
    if device == "cuda":
        return classify(event.name)
    chain = []
    while event is not None:
        chain.append(event.name)
        event = event.cpu_parent
    for name in reversed(chain):
        if name not in RANGES and classify(name) != "other kernels":
            return classify(name)
    return "other kernels"


def _span(intervals) -> float:
    """ms from the first start to the last end."""
    return (max(end for _, end in intervals) - min(start for start, _ in intervals)) / 1e3 if intervals else 0.0


def _busy(intervals) -> float:
    """ms covered by at least one interval."""
    busy, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            busy += 0.0 if current_end is None else current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return (busy + (current_end - current_start if current_end is not None else 0.0)) / 1e3


def _export_gzipped(prof, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(raw)
        with open(raw, "rb") as src, gzip.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)

