"""Timing, device ceilings and result rows shared by `mpdit bench` and benchmarks/.

Short calls: triton.testing.do_bench on GPU (CUDA events, warm-up, L2 flush between runs),
or replays of a CUDA graph where the host's launch cost would be timed instead; perf_counter on
CPU; median with 20th / 80th percentiles of at least `min_reps` runs.
Long calls (a training step, a sampling run): synchronised perf_counter per call.
Rows are long format: case, provider, mode, metric, unit, x, value, device, timestamp, git sha.
"""
import csv
import datetime
import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

import torch

from mpdit.bench.environment import environment
from mpdit.io.files import atomic_path


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


def git_sha() -> str:
    """The checkout's commit; MPDIT_GIT_SHA overrides it (a copy of a working tree, as on a lent
    GPU machine, can carry another commit's .git)."""
    if os.environ.get("MPDIT_GIT_SHA"):
        return os.environ["MPDIT_GIT_SHA"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _records(path: str):
    """(line number, record, raw line) of bench.jsonl. A last line without its newline that is
    not JSON is a write cut short by a kill: skipped. Any other line that is not a JSON object
    (a hand edit, a damaged file) is a ValueError naming the file and the line."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)  # bytes: invalid UTF-8 is a ValueError too
        except ValueError:
            if number == len(lines):  # the torn last line
                continue
            raise ValueError(f"{path}: line {number} is not JSON (a hand edit or a damaged file); remove the line, "
                             "or run without --resume") from None
        if not isinstance(item, dict):
            raise ValueError(f"{path}: line {number} is a JSON {type(item).__name__}, not a bench record; remove the "
                             "line, or run without --resume")
        yield number, item, line


def read_stream(path: str) -> dict:
    """{case key (JSON): (its rows, its error or None)} of the cases bench.jsonl says are done (a
    case's rows are written together with its done line: rows after the last one are a torn write
    or a case that did not finish)."""
    done, pending = {}, []
    for _, item, _ in _records(path):
        if "settings" in item:  # the run's settings (recorded_settings), not a row
            continue
        if "done" in item:
            done[json.dumps(item["done"])] = (pending, item.get("error"))
            pending = []
        else:
            pending.append(item)
    return done


def recorded_settings(path: str):
    """The settings bench.jsonl was written with (its first record), or None (an older file)."""
    for _, item, _ in _records(path):
        return item.get("settings")
    return None


def trim_stream(path: str) -> int:
    """Rewrites bench.jsonl without what follows its last done line (the rows of a case that did
    not finish, a torn last line), so that a resumed run appends to whole lines of finished cases
    only; returns the number of lines dropped."""
    kept, total, last_done = [], 0, 0
    with open(path, "rb") as f:
        total = sum(1 for line in f.read().split(b"\n") if line.strip())
    for _, item, line in _records(path):
        kept.append(line)
        if "done" in item or "settings" in item:  # the settings line heads the file: always kept
            last_done = len(kept)
    if total == last_done:
        return 0
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.writelines(line + b"\n" for line in kept[:last_done])
    os.replace(tmp, path)
    return total - last_done


@dataclass(frozen=True)
class Shape:
    """What a figure was measured at: its rows carry these fields, and `label` (the row's x) is
    only ever rendered from them, never parsed back."""

    batch: Optional[int] = None
    width: Optional[int] = None  # hidden width D (fused ops)
    dtype: Optional[str] = None  # "float32", "bfloat16"
    guidance: Optional[float] = None  # classifier-free guidance scale (sampling)

    @property
    def label(self) -> str:
        parts = [f"B={self.batch}" if self.batch is not None else None,
                 f"D={self.width}" if self.width is not None else None,
                 f"cfg={self.guidance}" if self.guidance is not None else None, self.dtype]
        return " ".join(part for part in parts if part)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


ROW_FIELDS = ("case", "provider", "mode", "metric", "unit", "x", "value", "device", "timestamp", "git_sha", "batch",
              "width", "dtype")


class Results:
    """Collects long-format rows (and failures) and writes them as JSON and CSV into a folder.
    With `stream` (a path), flush(key) appends the rows added since the last flush and a line
    {"done": key} to that JSON-lines file in one write: a run cut short keeps every finished
    case, and a resumed run can tell which cases are done."""

    def __init__(self, device: str, stream: str = None):
        self.device = device
        self.rows = []
        self.errors = []
        self.sha = git_sha()
        self.stream = stream
        self.flushed = 0
        if stream:
            os.makedirs(os.path.dirname(stream) or ".", exist_ok=True)

    def add(self, case: str, provider: str, mode: str, metric: str, unit: str, x, value: float) -> None:
        """One row; x is a Shape (its fields kept, its label the row's x) or a plain label."""
        shape = x if isinstance(x, Shape) else Shape()
        self.rows.append({"case": case, "provider": provider, "mode": mode, "metric": metric, "unit": unit,
                          "x": shape.label if isinstance(x, Shape) else x, "value": value, "device": self.device,
                          "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "git_sha": self.sha, "batch": shape.batch, "width": shape.width, "dtype": shape.dtype})

    def flush(self, key, error: dict = None) -> None:
        """Stream the rows since the last flush, then {"done": key} (with the case's error, if any)."""
        if not self.stream:
            return
        done = {"done": key, **({"error": error} if error else {})}
        lines = [json.dumps(row) for row in self.rows[self.flushed:]] + [json.dumps(done)]
        with open(self.stream, "a") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
        self.flushed = len(self.rows)

    def top_kernels(self) -> dict:
        """{"<model> <provider>": [(kernel, ms per step)], longest first}, from the profile's rows."""
        top = {}
        for row in self.rows:
            if row["mode"] == "top_kernel":
                top.setdefault(f"{row['case']} {row['provider']}", []).append((row["metric"], row["value"]))
        return top

    def value(self, case, provider, mode, metric, x=None):
        """The last value recorded for this key (and this x, when given), or None."""
        for row in reversed(self.rows):
            if (row["case"], row["provider"], row["mode"], row["metric"]) == (case, provider, mode, metric) and \
                    (x is None or row["x"] == x):
                return row["value"]
        return None

    def write(self, folder: str, name: str, extra: dict = None) -> str:
        """<name>.json (environment, extra, rows, errors) and <name>.csv (the rows)."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.json")
        env = (extra or {}).pop("environment", None) or environment(self.device)
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump({"environment": env, **(extra or {}), "rows": self.rows, "errors": self.errors,
                       "top_kernels": self.top_kernels()}, f, indent=1)
        with atomic_path(os.path.join(folder, f"{name}.csv")) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        return path
