"""Timing and device ceilings shared by `mpdit bench` and benchmarks/.

Short calls: triton.testing.do_bench on GPU (CUDA events, warm-up, L2 flush between runs),
or replays of a CUDA graph where the host's launch cost would be timed instead; perf_counter on
CPU; median with 20th / 80th percentiles of at least `min_reps` runs.
Long calls (a training step, a sampling run): synchronised perf_counter per call.
"""
import statistics
import time

import torch


def time_call(fn, device: str, warmup_ms: float = 25, rep_ms: float = 100, min_reps: int = 10,
              graph: bool = False) -> dict:
    """{'median_ms', 'p20_ms', 'p80_ms'} of fn() on `device`. graph: on CUDA, replays of fn
    captured in a CUDA graph, so that a call shorter than its host-side launch cost (a fused op
    at the coarse 80-token shape) is timed on the device, not on the host."""
    if device == "cuda":
        import triton.testing

        if graph:
            p20, median, p80 = triton.testing.do_bench_cudagraph(fn, rep=rep_ms, quantiles=[0.2, 0.5, 0.8])
        else:
            p20, median, p80 = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.2, 0.5, 0.8])
        return {"median_ms": median, "p20_ms": p20, "p80_ms": p80}
    fn()  # warm-up: first-call costs stay out of the numbers
    times, deadline = [], time.perf_counter() + rep_ms / 1e3
    while len(times) < min_reps or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return _quantiles(times)


NOISY = 0.30  # p20-p80 spread over the median past which a time is marked noisy


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(fn, device: str, reps: int = 10, warmup: int = 2) -> dict:
    """{'median_ms', 'p20_ms', 'p80_ms', 'warmup_ms'} of a long call, synchronised around each run."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    synchronize(device)
    warmup_ms = (time.perf_counter() - start) * 1e3
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return {**_quantiles(times), "warmup_ms": warmup_ms}


def _quantiles(times: list) -> dict:
    if len(times) < 2:
        return {"median_ms": times[0], "p20_ms": times[0], "p80_ms": times[0]}
    quantiles = statistics.quantiles(times, n=5, method="inclusive")  # within the runs: 2 never extrapolate below 0
    return {"median_ms": statistics.median(times), "p20_ms": quantiles[0], "p80_ms": quantiles[-1]}


def matmul_peak_tflops(device: str, dtype: torch.dtype) -> float:
    """Rate of a large square matrix product in `dtype`: the compute ceiling MFU is quoted against."""
    n = 8192 if device == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    ms = time_call(lambda: a @ b, device)["median_ms"]
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


def copy_bandwidth_gbs(device: str, size_bytes: int = 1 << 30) -> float:
    """Device-to-device copy rate, bytes read plus bytes written, in GB/s (the memory ceiling)."""
    src = torch.empty(size_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_call(lambda: dst.copy_(src), device)["median_ms"]
    return 2 * size_bytes / (ms * 1e-3) / 1e9
