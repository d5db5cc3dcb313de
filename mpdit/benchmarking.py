"""Timing and result rows shared by the benchmarks (benchmarks/ and, later, `mpdit bench`).

GPU: triton.testing.do_bench (CUDA events, warm-up, cache flush between runs), median
with 20th / 80th percentiles. CPU: perf_counter around synchronous calls, same quantiles.
Rows are long format: case, provider, mode, metric, unit, x, value, device, timestamp, git sha.
"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import time

import torch


def time_call(fn, device: str, warmup_ms: float = 25, rep_ms: float = 100, min_reps: int = 10) -> dict:
    """{'median_ms', 'p20_ms', 'p80_ms'} of fn() on `device`."""
    if device == "cuda":
        import triton.testing

        p20, median, p80 = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.2, 0.5, 0.8])
        return {"median_ms": median, "p20_ms": p20, "p80_ms": p80}
    fn()  # warm-up: first-call costs stay out of the numbers
    times, deadline = [], time.perf_counter() + rep_ms / 1e3
    while len(times) < min_reps or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    quantiles = statistics.quantiles(times, n=5)
    return {"median_ms": statistics.median(times), "p20_ms": quantiles[0], "p80_ms": quantiles[-1]}


def copy_bandwidth_gbs(device: str, size_bytes: int = 1 << 30) -> float:
    """Device-to-device copy rate, bytes read plus bytes written, in GB/s (the memory ceiling)."""
    src = torch.empty(size_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_call(lambda: dst.copy_(src), device)["median_ms"]
    return 2 * size_bytes / (ms * 1e-3) / 1e9


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(device: str) -> dict:
    env = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env


class Results:
    """Collects long-format rows and writes them as JSON (and the environment) into a folder."""

    def __init__(self, device: str):
        self.device = device
        self.rows = []
        self.sha = git_sha()

    def add(self, case: str, provider: str, mode: str, metric: str, unit: str, x, value: float) -> None:
        self.rows.append({"case": case, "provider": provider, "mode": mode, "metric": metric, "unit": unit, "x": x,
                          "value": value, "device": self.device,
                          "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "git_sha": self.sha})

    def write(self, folder: str, name: str, extra: dict = None) -> str:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.json")
        with open(path, "w") as f:
            json.dump({"environment": environment(self.device), **(extra or {}), "rows": self.rows}, f, indent=1)
        return path
