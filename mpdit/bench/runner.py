"""`mpdit bench`: run a preset's cases one by one, streaming each finished case to disk.

Each case (a section x model x provider, or one fused op at one width) appends its rows and
a line saying it is done to <out>/bench.jsonl the moment it finishes, and prints one line.
bench.json, bench.csv, bench.md and the plots are written from the rows at the end, and
also when the run is interrupted (SIGINT / SIGTERM: BenchInterrupted after the files are
written). resume=True reads bench.jsonl back and skips the cases it holds; time_limit skips
the cases that would start after it; a case past case_timeout is recorded as an error.

run() leaves process-wide settings as it found them; TF32 is the caller's choice (the
command line turns it on once, at its entry) and is recorded with the results.
"""
import datetime
import json
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass

import torch
import torch._functorch.config

from mpdit.bench import attention_cases, isolation, kernel_cases, model_cases, providers as bench_providers
from mpdit.bench.environment import environment
from mpdit.bench.presets import PRESETS, SECTIONS
from mpdit.bench.report import markdown, write_plots
from mpdit.bench.timing import Results, copy_bandwidth_gbs, matmul_peak_tflops
from mpdit.audit.flops import audit, count_train_step_flops
from mpdit.models import create_model
from mpdit_kernels import attention_paths


class BenchInterrupted(BaseException):
    """SIGINT / SIGTERM during a run; raised after the result files are written."""

    def __init__(self, signum: int, done: int, total: int, out: str):
        super().__init__(f"interrupted after {done} of {total} cases; rows so far in {out}")
        self.signum, self.done, self.total, self.out = signum, done, total, out


class CaseTimeout(BaseException):
    """A case ran past case_timeout (a BaseException, so that no library's `except Exception` eats it)."""


@dataclass(frozen=True)
class Case:
    section: str  # setup, train, inference, sampling, attention, kernels
    model: str  # a model label; for kernels the op's case name
    provider: str  # a provider; for kernels the width, "D=<width>"
    spec: object = None  # the ModelSpec (model cases)

    @property
    def key(self) -> list:
        return [self.section, self.model, self.provider]

    @property
    def label(self) -> str:
        return " ".join(part for part in self.key if part and part != "-")


def default_out(device: str, preset: str) -> str:
    """A folder in the current directory named for the run."""
    return f"bench-{datetime.date.today()}-{device}-{preset}"


def applicable_providers(providers, device: str) -> tuple:
    """The providers the backend table says can run on `device`."""
    return tuple(p for p in providers if bench_providers.unavailable_reason(p, device) is None)


def check_choice(name: str, values, allowed) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name}={','.join(unknown)}: expected some of {', '.join(allowed)}")


def plan(preset, device, models, providers, sections):
    """The (section, model spec, provider) tasks of the model sections, in the order they run."""
    tasks = []
    for spec in models:
        for provider in providers:
            compiled = bench_providers.split(provider).compiled
            if compiled and spec.label not in preset.compile_models:
                continue
            if "train" in sections or "profile" in sections:  # the profile runs the timed step
                tasks.append(("train", spec, provider))
            if not compiled:  # inference and sampling run eager models (compiling again costs minutes)
                tasks += [(section, spec, provider) for section in ("inference", "sampling") if section in sections]
    return tasks


def cases_of(preset, device, specs, chosen, sections) -> list:
    """Every case of the run, in order: setup, the model sections, attention, the fused ops."""
    cases = [Case("setup", "-", "-")]
    cases += [Case(section, spec.label, provider, spec) for section, spec, provider in
              plan(preset, device, specs, chosen, sections)]
    if "profile" in sections and device == "cuda":
        cases.append(Case("attention", "-", "sdpa"))
    if "kernels" in sections and kernel_providers_of(chosen):
        cases += [Case("kernels", name, f"D={width}") for width in preset.kernel_widths for name in kernel_cases.CASES]
    return cases


def kernel_providers_of(chosen) -> tuple:
    # the last is the one the others' times are quoted against: triton where it runs
    return tuple(p for p in kernel_cases.PROVIDERS if p in chosen)


def run(preset_name="default", device=None, out=None, models=None, providers=None, sections=None,
        progress=True, plots=True, resume=False, time_limit=None, case_timeout=300.0, echo=print, isolate=False,
        only=None) -> dict:
    """Run a preset's cases; returns the written files' paths, the results and the Markdown.
    isolate: each case in its own process (mpdit.bench.isolation); only: run just the case with
    this key (what an isolated case's process does), writing no files but bench.jsonl."""
    if preset_name not in PRESETS:
        raise ValueError(f"preset={preset_name!r}: expected one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise ValueError(f"device={device!r}: expected 'cpu'" + (" or 'cuda'" if torch.cuda.is_available() else
                                                                   " (no CUDA device here)"))
    labels = [spec.label for spec in preset.models]
    if models:
        check_choice("models", models, labels)
    specs = [spec for spec in preset.models if not models or spec.label in models]
    if providers:
        check_choice("providers", providers, bench_providers.PROVIDERS)
    requested = tuple(providers or preset.providers)
    chosen = applicable_providers(requested, device)
    if sections:
        check_choice("sections", sections, SECTIONS)
    for name, value in (("time_limit", time_limit), ("case_timeout", case_timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name}={value}: expected a positive number of seconds")
    sections = tuple(sections or preset.sections)
    dtype = getattr(torch, preset.dtype) if device == "cuda" else torch.float32
    out = out or default_out(device, preset.name)
    stream = os.path.join(out, "bench.jsonl")
    if resume and not os.path.exists(stream):
        raise ValueError(f"resume: no {stream} to continue; run without --resume first")
    # Backward of a kernel is timed on a retained graph; compiled graphs refuse one while they
    # donate buffers (a memory saving, not a speed one). Restored on the way out.
    worker = {"preset": preset.name, "device": device, "out": out, "models": [spec.label for spec in specs],
              "providers": list(requested), "sections": list(sections), "case_timeout": case_timeout}
    with torch._functorch.config.patch(donated_buffer=False):
        return _run(preset, device, out, specs, requested, chosen, sections, dtype, progress, plots, resume,
                    time_limit, case_timeout, echo, worker if isolate else None, only)


def _run(preset, device, out, specs, requested, chosen, sections, dtype, progress, plots, resume, time_limit,
         case_timeout, echo, worker, only) -> dict:
    torch.manual_seed(0)
    stream = os.path.join(out, "bench.jsonl")
    done = read_stream(stream) if resume else {}
    if not resume and os.path.exists(stream):
        os.remove(stream)
    results = Results(device, stream=stream)
    open(stream, "a").close()  # exists from the start: an isolated case's process resumes from it
    _hold(results, done)
    cases = cases_of(preset, device, specs, chosen, sections)
    notes = [f"{provider} not run on {device}: {bench_providers.unavailable_reason(provider, device)}"
             for provider in requested if provider not in chosen]
    if device == "cpu" and "native" in chosen:
        notes.append("native on a CPU runs the extension's C++ loops, not its CUDA kernels")
    if "kernels" in sections and "triton" not in kernel_providers_of(chosen):
        notes.append("fused-op microbenchmarks ran without the triton provider (Triton needs a CUDA device)")
    context = {"macs": {}, "peak": None, "copy_gbs": None, "specs": specs}
    skipped, finished, started = [], 0, time.monotonic()
    bar = _progress(len(cases), progress)
    with _signals_raise() as interrupted:
        try:
            for index, case in enumerate(cases, 1):
                key = json.dumps(case.key)
                if key in done:
                    if case.section == "setup":
                        _setup_from_rows(context, results, specs)
                    finished += 1
                    bar.update(1)
                    continue
                if only is not None and case.key != only:
                    continue  # an isolated case's process runs that case alone
                if only is not None:  # the parent's clock for --case-timeout starts now
                    print(isolation.STARTED, flush=True)
                late = time_limit is not None and time.monotonic() - started > time_limit
                if late and case.section != "setup":  # the ceilings every other case is quoted against
                    skipped.append(case.label)
                    bar.update(1)
                    continue
                bar.set_description(case.label)
                begin = time.monotonic()
                if worker:
                    error = isolation.run_case(worker, case.key, stream, case_timeout)
                    done = read_stream(stream)
                    _hold(results, done)
                    error = done[key][1] if key in done else {"case": case.key, **error}
                else:
                    error = _run_case(case, results, context, preset, device, dtype, sections, out, chosen,
                                      case_timeout)
                    error = {"case": case.key, **error} if error else None
                    for path in attention_paths() if only is not None else ():  # for the parent's record
                        results.add("-", "-", "attention_path", path, "-", "-", 1.0)
                seconds = time.monotonic() - begin
                if not worker or key not in done:  # else the case's process wrote its rows and done line
                    results.errors += [error] if error else []
                    results.add(case.model, case.provider, "duration", case.section, "s", "-", seconds)
                    results.flush(case.key, error)
                finished += 1
                line = f"[{index}/{len(cases)}] {case.label}: {seconds:.1f} s" + (
                    f", FAILED: {error['error']}" if error else "")
                if progress:
                    bar.write(line)
                else:
                    echo(line)
                model_cases.release(device)
                bar.update(1)
        finally:
            bar.close()
            if only is None:  # else the parent writes them
                outcome = _write(results, out, preset, device, dtype, chosen, sections, notes, skipped, plots)
    if interrupted:
        raise BenchInterrupted(interrupted[0], finished, len(cases), out)
    return outcome if only is None else {"results": results}


def _hold(results, done: dict) -> None:
    """Make `results` hold exactly the rows and errors of the done cases (as read from the stream)."""
    results.rows = [row for rows, _ in done.values() for row in rows]
    results.errors = [error for _, error in done.values() if error]
    results.flushed = len(results.rows)


def read_stream(path: str) -> dict:
    """{case key (JSON): (its rows, its error or None)} of the cases bench.jsonl says are done (a
    case's rows are written together with its done line: rows after the last one are a torn write)."""
    done, pending = {}, []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:  # a torn line: a write cut short by a kill
                continue
            if "done" in item:
                done[json.dumps(item["done"])] = (pending, item.get("error"))
                pending = []
            else:
                pending.append(item)
    return done


def _setup_from_rows(context, results, specs) -> None:
    context["peak"] = results.value("device", "-", "ceiling", "matmul_peak")
    context["copy_gbs"] = results.value("device", "-", "ceiling", "copy_bandwidth")
    for spec in specs:
        row = audit(spec.name, **spec.overrides)
        context["macs"][spec.label] = row.gflops_exact * 1e9


def _run_case(case, results, context, preset, device, dtype, sections, out, chosen, case_timeout):
    """Run one case; returns None, or {'error', 'traceback'} when it failed or timed out."""
    try:
        with _time_limit(case_timeout if case.section != "setup" else None):
            if case.section == "setup":
                _setup(results, context, device, dtype, sections, case)
            elif case.section == "attention":
                attention_cases.bench_attention(results, context["specs"], preset.train_batch, dtype, device)
            elif case.section == "kernels":
                width = int(case.provider[2:])
                x_label = f"B={preset.kernel_batch} D={width} {str(dtype).replace('torch.', '')}"
                kernel_cases.bench_case(results, case.model, kernel_cases.CASES[case.model], preset.kernel_batch,
                                        width, dtype, device, kernel_providers_of(chosen), context["copy_gbs"],
                                        x_label, preset.reps)
            else:
                _run_model_case(results, case, preset, device, dtype, context,
                                profile_to=out if "profile" in sections else None)
        return None
    except CaseTimeout:
        return {"error": f"timed out after {case_timeout:.0f} s (--case-timeout)", "traceback": ""}
    except Exception as error:  # one failing case is reported, the others still run
        return {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=3)}


def _setup(results, context, device, dtype, sections, case) -> None:
    """The device's ceilings and each model's FLOP audit: what the other cases are quoted against."""
    context["peak"] = matmul_peak_tflops(device, dtype)
    context["copy_gbs"] = copy_bandwidth_gbs(device, size_bytes=(1 << 30) if device == "cuda" else (1 << 26))
    results.add("device", "-", "ceiling", "matmul_peak", "TFLOP/s", str(dtype).replace("torch.", ""),
                context["peak"])
    results.add("device", "-", "ceiling", "copy_bandwidth", "GB/s", "device copy", context["copy_gbs"])
    for spec in context["specs"]:
        row = audit(spec.name, **spec.overrides)
        context["macs"][spec.label] = row.gflops_exact * 1e9
        if "flops" in sections:
            with torch.device("meta"):
                train_flops = count_train_step_flops(create_model(spec.name, **spec.overrides))
            for metric, unit, value in (("params", "M", row.params_m), ("gflops_paper", "GMAC", row.gflops_paper),
                                        ("gflops_exact", "GMAC", row.gflops_exact),
                                        ("train_step_gflop", "GFLOP", train_flops / 1e9)):
                results.add(spec.label, "-", "audit", metric, unit, "per image", value)


def _run_model_case(results, case, preset, device, dtype, context, profile_to=None):
    spec, provider, macs, peak = case.spec, case.provider, context["macs"][case.model], context["peak"]
    if case.section == "train":
        x_label = f"B={preset.train_batch} {str(dtype).replace('torch.', '')}"
        model_cases.bench_train(results, spec, provider, device, dtype, preset.train_batch, preset.reps,
                                preset.warmup, x_label, macs, peak, profile_to=profile_to)
    elif case.section == "inference":
        model_cases.bench_inference(results, spec, provider, device, dtype, preset.inference_batches, preset.reps,
                                    preset.warmup, macs, peak)
    else:
        model_cases.bench_sampling(results, spec, provider, device, dtype, preset.sample_batches, preset.sample_steps,
                                   preset.reps, preset.warmup, graphs=device == "cuda")


def _write(results, out, preset, device, dtype, chosen, sections, notes, skipped, plots) -> dict:
    """bench.json, bench.csv, bench.md and the plots, from the rows held (also after an interrupt)."""
    env = environment(device)
    env["attention_paths"] = sorted(set(attention_paths()) | {row["metric"] for row in results.rows
                                                               if row["mode"] == "attention_path"})
    env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    meta = {"environment": env, "preset": preset.name, "description": preset.description,
            "dtype": str(dtype).replace("torch.", ""), "providers": list(chosen), "sections": list(sections),
            "notes": notes + [f"skipped (past --time-limit): {label}" for label in skipped], "skipped": skipped,
            "baselines": preset.baselines}
    path = results.write(out, "bench", dict(meta))
    kernel_providers = kernel_providers_of(chosen)
    text = markdown(results, meta, kernel_providers)
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write(text + "\n")
    written = write_plots(results, out, meta, kernel_providers) if plots else []
    return {"json": path, "csv": path[:-5] + ".csv", "markdown_path": os.path.join(out, "bench.md"),
            "plots": written, "results": results, "meta": meta, "markdown": text}


class _signals_raise:
    """SIGINT / SIGTERM stop the run at the next Python instruction (KeyboardInterrupt-like);
    the signal number is kept so that the caller can exit 128 + signal after writing files."""

    def __enter__(self):
        self.received = []
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self.received

    def _handle(self, signum, frame):
        if not self.received:
            self.received.append(signum)
            raise _Stop()

    def __exit__(self, kind, value, tb):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return kind is _Stop  # swallowed here: run() raises BenchInterrupted after writing the files


class _Stop(BaseException):
    pass


class _time_limit:
    """Raise CaseTimeout in the main thread after `seconds` (an interval timer). A hang inside
    one C / CUDA call is not interrupted until it returns to Python."""

    def __init__(self, seconds):
        self.seconds = seconds if threading.current_thread() is threading.main_thread() else None

    def __enter__(self):
        if self.seconds:
            self.previous = signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    @staticmethod
    def _expire(signum, frame):
        raise CaseTimeout()

    def __exit__(self, *exc):
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
        return False


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="case", dynamic_ncols=True)
