"""How a case runs: in this process under a timer (InProcess), or in a process of its own that can
be killed even inside a hung CUDA call (Isolated). Both record the case's rows in the Results
and return its error, or None.

The ceilings (the device's measured matmul rate and copy bandwidth, each model's MACs) are what
every case is quoted against: measured by the setup case, or read back from its rows."""
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass

import torch

from mpdit.audit.flops import audit, count_train_step_flops
from mpdit.bench import attention_cases, kernel_cases, model_cases
from mpdit.bench.plan import SETUP, Plan
from mpdit.bench.results import Shape, dtype_name, read_stream
from mpdit.bench.timing import copy_bandwidth_gbs, matmul_peak_tflops
from mpdit.models import create_model
from mpdit_kernels import attention_paths

# The default case timeout: TIMEOUT_S on a machine with the matrix-product rate the presets were sized on
# (TFLOP/s as the setup case measures it: a 2-core CPU in fp32, an H200 in bf16), longer in proportion on a
# slower one or one that other work keeps busy, so that its bench is complete and slower, not full of holes.
TIMEOUT_S = 300.0
REFERENCE_TFLOPS = {"cpu": 0.15, "cuda": 750.0}


def default_case_timeout(device: str, matmul_tflops) -> float:
    """TIMEOUT_S scaled by how much slower this machine's measured matrix products are."""
    if not matmul_tflops:
        return TIMEOUT_S
    return TIMEOUT_S * max(1.0, REFERENCE_TFLOPS[device] / matmul_tflops)


@dataclass(frozen=True)
class Ceilings:
    """What every case is quoted against, as the setup case recorded it."""

    matmul_tflops: float  # in the plan's dtype
    copy_gbs: float  # device-to-device copy, bytes read + written
    macs: dict  # model label -> exact multiply-accumulates of one forward per image

    @classmethod
    def from_rows(cls, plan: Plan, results) -> "Ceilings":
        return cls(results.value("device", "-", "ceiling", "matmul_peak"),
                   results.value("device", "-", "ceiling", "copy_bandwidth"),
                   {spec.label: audit(spec.name, **spec.overrides).gflops_exact * 1e9 for spec in plan.specs})


def bench_setup(plan: Plan, case, results, ceilings=None) -> None:
    """Time the ceilings and audit the models (with the flops section), as rows."""
    peak = matmul_peak_tflops(plan.device, plan.dtype)
    copy = copy_bandwidth_gbs(plan.device, size_bytes=(1 << 30) if plan.device == "cuda" else (1 << 26))
    results.add("device", "-", "ceiling", "matmul_peak", "TFLOP/s", Shape(dtype=dtype_name(plan.dtype)), peak)
    results.add("device", "-", "ceiling", "copy_bandwidth", "GB/s", "device copy", copy)
    for spec in plan.specs if "flops" in plan.sections else ():
        row = audit(spec.name, **spec.overrides)
        with torch.device("meta"):
            train_flops = count_train_step_flops(create_model(spec.name, **spec.overrides))
        for metric, unit, value in (("params", "M", row.params_m), ("gflops_paper", "GMAC", row.gflops_paper),
                                    ("gflops_exact", "GMAC", row.gflops_exact),
                                    ("train_step_gflop", "GFLOP", train_flops / 1e9)):
            results.add(spec.label, "-", "audit", metric, unit, "per image", value)


def run_case(plan: Plan, case, results, ceilings: Ceilings) -> None:
    """Run one case, adding its rows to `results`. The section's function is looked up per call
    (a test stands in for one)."""
    if case.section == "setup":
        return bench_setup(plan, case, results, ceilings)
    module = {"kernels": kernel_cases, "attention": attention_cases}.get(case.section, model_cases)
    getattr(module, f"bench_{case.section}")(plan, case, results, ceilings)


class CaseTimeout(BaseException):
    """A case ran past its timeout (a BaseException, so that no library's `except Exception` eats it)."""


def record(case, results, error, seconds: float):
    """The case's duration row, then the case streamed as one line (its rows, its error); returns
    the error as recorded."""
    error = {"case": list(case.key), **error} if error else None
    results.add(case.key[1], case.key[2], "duration", case.section, "s", "-", seconds)
    results.finish(case.key, error)
    return error


class InProcess:
    """Cases in this process, each stopped by an interval timer at `timeout` seconds. The timer
    acts between Python instructions: a hang inside one C / CUDA call holds the run (Isolated
    does not)."""

    def __init__(self, plan: Plan, timeout: float):
        self.plan, self.timeout = plan, timeout

    def run(self, case, results, ceilings: Ceilings):
        """Run `case` and record it; its error ({'case', 'error', 'traceback'}) or None."""
        start, error = time.monotonic(), None
        try:
            with _time_limit(None if case == SETUP else self.timeout):  # the ceilings: no limit
                run_case(self.plan, case, results, ceilings)
        except CaseTimeout:
            error = {"error": f"timed out after {self.timeout:.0f} s (--case-timeout)", "traceback": ""}
        except Exception as failure:  # one failing case is reported, the others still run
            error = {"error": f"{type(failure).__name__}: {failure}", "traceback": traceback.format_exc(limit=3)}
        # which attention paths ran, as rows in the stream: a resumed run and an isolated case's parent report them
        for path in sorted(set(attention_paths()) - set(results.distinct("attention_path", "metric"))):
            results.add("-", "-", "attention_path", path, "-", "-", 1.0)
        return record(case, results, error, time.monotonic() - start)


class Isolated:
    """Each case in a process of its own (`python -m mpdit.bench.case_process`), which records the
    case itself; killed with its process group past the timeout (plus a grace period for its own
    timer), even inside a hung C or CUDA call. The timeout counts from the moment the process
    says its case began, so a slow process start never counts against the case. Costs a process
    start per case."""

    def __init__(self, plan: Plan, timeout: float):
        self.plan, self.timeout = plan, timeout
        self.held = contextlib.nullcontext  # the run's StopSignals.held: a stop waits until the child exists

    def run(self, case, results, ceilings: Ceilings):
        start = time.monotonic()
        request = json.dumps({"plan": {**self.plan.settings(), "out": self.plan.out}, "case": list(case.key),
                              "timeout": self.timeout})
        with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a chatty child never blocks on it
            child = None
            try:
                with self.held():
                    child = subprocess.Popen([sys.executable, "-m", "mpdit.bench.case_process", request],
                                             stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
                error = self._wait(child, stderr)
            except BaseException:  # SIGINT / SIGTERM of the parent: the child goes with it
                if child is not None:
                    kill(child)
                raise
        done = read_stream(results.stream)  # a torn line a killed child left is skipped, then cut by the next write
        key = json.dumps(list(case.key))
        if key in done:  # the child recorded the case: take its rows and error
            results.adopt(key, *done[key])
            return done[key][1]
        return record(case, results, error, time.monotonic() - start)

    def _wait(self, child, stderr) -> dict:
        """The error for the parent to record if the child records nothing (it was killed, died,
        or exited without running the case)."""
        if _wait_for_start(child) is None:
            kill(child)
            return {"error": f"its process did not start the case within {START_LIMIT_S:.0f} s", "traceback": ""}
        try:
            child.communicate(timeout=self.timeout + GRACE_S)
        except subprocess.TimeoutExpired:
            kill(child)
            return {"error": f"timed out after {self.timeout:.0f} s (--case-timeout; its process was killed)",
                    "traceback": ""}
        stderr.seek(0)
        said = stderr.read()
        if child.returncode:
            lines = [line for line in said.splitlines() if line.strip()]
            how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
            return {"error": f"its process ended with {how}" + (f": {lines[-1]}" if lines else ""),
                    "traceback": "\n".join(lines[-20:])}
        return {"error": "its process exited without recording the case", "traceback": said[-2000:]}


GRACE_S = 30.0  # the child's own timer fires at the timeout; the kill only when it cannot
STARTED = "mpdit-bench-case-started"  # the child's line on stdout when its case begins
START_LIMIT_S = 600.0  # a child that has not begun its case by then (a hung import) is killed


def _wait_for_start(child: subprocess.Popen):
    """Read the child's stdout until it says its case started (True), closes it (False: it
    exited), or START_LIMIT_S passes (None)."""
    deadline = time.monotonic() + START_LIMIT_S
    while select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        line = child.stdout.readline()
        if not line or line.strip() == STARTED:
            return bool(line)
    return None


def kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


@contextlib.contextmanager
def _time_limit(seconds):
    """Raise CaseTimeout in the main thread after `seconds` (an interval timer; None: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _expire(signum, frame):
    raise CaseTimeout()
