"""`mpdit bench`: run a plan's cases one by one, streaming each finished case to disk.

Each case appends its rows and a line saying it is done to <out>/bench.jsonl the moment it
finishes, and prints one line. bench.json, bench.csv, bench.md and the plots are written from
the rows at the end, and also when the run is interrupted (SIGINT / SIGTERM: BenchInterrupted
after the files are written). With resume the cases bench.jsonl holds are skipped; time_limit
skips the cases that would start after it; a case past case_timeout is recorded as an error.

run() leaves process-wide settings as it found them; TF32 is the caller's choice (the command
line turns it on once, at its entry) and is recorded with the results.
"""
import json
import os
import time

import torch
import torch._functorch.config

from mpdit.bench import model_cases
from mpdit.bench.environment import environment
from mpdit.bench.executor import TIMEOUT_S, Ceilings, InProcess, Isolated, default_case_timeout
from mpdit.bench.plan import SETUP, Plan, RunOptions
from mpdit.bench.report import markdown, write_plots
from mpdit.bench.results import Results, check_settings, start_stream
from mpdit.io.files import atomic_path
from mpdit.io.run_lock import RunLock
from mpdit.signals import StopSignals
from mpdit_kernels import attention_paths


class BenchInterrupted(BaseException):
    """SIGINT / SIGTERM during a run; raised after the result files are written."""

    def __init__(self, signum: int, done: int, total: int, out: str):
        super().__init__(f"interrupted after {done} of {total} cases; rows so far in {out}")
        self.signum, self.done, self.total, self.out = signum, done, total, out


def run(plan: Plan, options: RunOptions = RunOptions(), echo=print) -> dict:
    """Run the plan's cases; returns the written files' paths, the results, the metadata and the
    Markdown report."""
    options.check()
    stream = os.path.join(plan.out, "bench.jsonl")
    if options.resume and not os.path.exists(stream):
        raise ValueError(f"resume: no {stream} to continue; run without --resume first")
    os.makedirs(plan.out, exist_ok=True)
    # One run per folder: a second bench on it would delete this one's rows and time against it.
    # Backward of a kernel is timed on a retained graph; compiled graphs refuse one while they
    # donate buffers (a memory saving, not a speed one). Restored on the way out.
    with RunLock(plan.out, "bench.lock", "out", "mpdit bench"), torch._functorch.config.patch(donated_buffer=False):
        if options.resume:
            check_settings(stream, plan.settings())
        return _run(plan, options, echo, stream)


def _run(plan: Plan, options: RunOptions, echo, stream: str) -> dict:
    torch.manual_seed(0)
    if not options.resume:
        start_stream(stream, plan.settings())  # exists from the start, settings first
    results = Results.resumed(plan.device, stream)
    cases = plan.cases()
    executor = (Isolated if options.isolate else InProcess)(plan, options.case_timeout or TIMEOUT_S)
    ceilings = None

    def read_ceilings():  # the setup case's; the default case timeout scaled to them
        measured = Ceilings.from_rows(plan, results)
        if options.case_timeout is None:
            executor.timeout = default_case_timeout(plan.device, measured.matmul_tflops)
        return measured

    if json.dumps(list(SETUP.key)) in results.finished:
        ceilings = read_ceilings()
    skipped, finished, started = [], 0, time.monotonic()
    bar = _progress(len(cases), options.progress)
    with StopSignals(interrupt=True) as stop:  # the files are written on the way out
        executor.held = stop.held  # an isolated case's process is started whole, then killed with the run
        try:
            for index, case in enumerate(cases, 1):
                bar.update(1)
                if json.dumps(list(case.key)) in results.finished:
                    finished += 1
                    continue
                if options.time_limit is not None and time.monotonic() - started > options.time_limit \
                        and case != SETUP:  # the ceilings every other case is quoted against
                    skipped.append(case.label)
                    continue
                bar.set_description(case.label)
                begin = time.monotonic()
                error = executor.run(case, results, ceilings)
                ceilings = read_ceilings() if case == SETUP else ceilings
                finished += 1
                (bar.write if options.progress else echo)(
                    f"[{index}/{len(cases)}] {case.label}: {time.monotonic() - begin:.1f} s"
                    + (f", FAILED: {error['error']}" if error else ""))
                model_cases.release(plan.device)
        finally:
            bar.close()
            outcome = _write(plan, results, skipped, options.plots, executor.timeout)
    if stop.signum:
        raise BenchInterrupted(stop.signum, finished, len(cases), plan.out)
    return outcome


def _write(plan: Plan, results, skipped: list, plots: bool, case_timeout: float) -> dict:
    """bench.json, bench.csv, bench.md and the plots, from the rows held (also after an interrupt)."""
    env = environment(plan.device)
    env["attention_paths"] = sorted(set(attention_paths()) | {row["metric"] for row in results.rows
                                                               if row["mode"] == "attention_path"})
    env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    meta = {"environment": env, "preset": plan.preset.name, "description": plan.preset.description,
            "dtype": str(plan.dtype).replace("torch.", ""), "providers": list(plan.providers),
            "sections": list(plan.sections),
            "notes": plan.notes() + [f"skipped (past --time-limit): {label}" for label in skipped]
            + ([f"case timeout {case_timeout:.0f} s: {TIMEOUT_S:.0f} s scaled to this machine's measured matrix "
                "products (--case-timeout sets it)"] if case_timeout > TIMEOUT_S else []),
            "skipped": skipped, "baselines": plan.preset.baselines, "case_timeout_s": case_timeout}
    path = results.write(plan.out, meta)
    text = markdown(results, meta, plan.kernel_providers)
    with atomic_path(os.path.join(plan.out, "bench.md")) as tmp, open(tmp, "w") as f:
        f.write(text + "\n")
    written = write_plots(results, plan.out, meta, plan.kernel_providers) if plots else []
    return {"json": path, "csv": path[:-5] + ".csv", "markdown_path": os.path.join(plan.out, "bench.md"),
            "plots": written, "results": results, "meta": meta, "markdown": text}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="case", dynamic_ncols=True)
