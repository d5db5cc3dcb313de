"""`mpdit bench`: run a preset's sections, collect rows, write JSON / CSV / plots, print Markdown.

run() leaves process-wide settings as it found them; TF32 is the caller's choice (the
command line turns it on once, at its entry) and is recorded with the results.
"""
import datetime
import os
import traceback

import torch
import torch._functorch.config

from mpdit.bench import attention_cases, kernel_cases, model_cases, providers as bench_providers
from mpdit.bench.environment import environment
from mpdit.bench.presets import PRESETS, SECTIONS
from mpdit.bench.report import markdown, write_plots
from mpdit.bench.timing import Results, copy_bandwidth_gbs, matmul_peak_tflops
from mpdit.audit.flops import audit, count_train_step_flops
from mpdit.models import create_model
from mpdit_kernels import attention_paths


def applicable_providers(providers, device: str) -> tuple:
    """The providers the backend table says can run on `device`."""
    return tuple(p for p in providers if bench_providers.unavailable_reason(p, device) is None)


def check_choice(name: str, values, allowed) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name}={','.join(unknown)}: expected some of {', '.join(allowed)}")


def plan(preset, device, models, providers, sections):
    """The (section, model spec, provider) tasks, in the order they run."""
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


def run(preset_name="default", device=None, out=None, models=None, providers=None, sections=None,
        progress=True, plots=True) -> dict:
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
    sections = tuple(sections or preset.sections)
    dtype = getattr(torch, preset.dtype) if device == "cuda" else torch.float32
    out = out or os.path.join("benchmarks", "results",
                              f"{datetime.date.today()}-{device}-{preset.name}")
    # Backward of a kernel is timed on a retained graph; compiled graphs refuse one while they
    # donate buffers (a memory saving, not a speed one). Restored on the way out.
    with torch._functorch.config.patch(donated_buffer=False):
        return _run(preset, device, out, specs, requested, chosen, sections, dtype, progress, plots)


def _run(preset, device, out, specs, requested, chosen, sections, dtype, progress, plots) -> dict:
    torch.manual_seed(0)
    stream = os.path.join(out, "bench.jsonl")
    if os.path.exists(stream):
        os.remove(stream)
    results = Results(device, stream=stream)
    notes = [f"{provider} not run on {device}: {bench_providers.unavailable_reason(provider, device)}"
             for provider in requested if provider not in chosen]
    peak = matmul_peak_tflops(device, dtype)
    copy_gbs = copy_bandwidth_gbs(device, size_bytes=(1 << 30) if device == "cuda" else (1 << 26))
    results.add("device", "-", "ceiling", "matmul_peak", "TFLOP/s", str(dtype).replace("torch.", ""), peak)
    results.add("device", "-", "ceiling", "copy_bandwidth", "GB/s", "device copy", copy_gbs)

    macs = {}
    for spec in specs:
        row = audit(spec.name, **spec.overrides)
        macs[spec.label] = row.gflops_exact * 1e9
        if "flops" in sections:
            with torch.device("meta"):
                train_flops = count_train_step_flops(create_model(spec.name, **spec.overrides))
            for metric, unit, value in (("params", "M", row.params_m), ("gflops_paper", "GMAC", row.gflops_paper),
                                        ("gflops_exact", "GMAC", row.gflops_exact),
                                        ("train_step_gflop", "GFLOP", train_flops / 1e9)):
                results.add(spec.label, "-", "audit", metric, unit, "per image", value)

    tasks = plan(preset, device, specs, chosen, sections)
    kernel_tasks = len(preset.kernel_widths) * len(kernel_cases.CASES) if "kernels" in sections else 0
    # the last is the one the others' times are quoted against: triton where it runs
    kernel_providers = tuple(p for p in kernel_cases.PROVIDERS if p in chosen)
    if kernel_tasks and "triton" not in kernel_providers:
        notes.append("fused-op microbenchmarks ran without the triton provider (Triton needs a CUDA device)")
    if not kernel_providers:
        kernel_tasks = 0
    bar = _progress(len(tasks) + kernel_tasks, progress)
    for section, spec, provider in tasks:
        bar.set_description(f"{section} {spec.label} {provider}")
        try:
            _run_task(results, section, spec, provider, preset, device, dtype, macs[spec.label], peak,
                      profile_to=out if "profile" in sections else None)
        except Exception as error:  # one failing case is reported, the others still run
            results.errors.append({"section": section, "model": spec.label, "provider": provider,
                                   "error": f"{type(error).__name__}: {error}",
                                   "traceback": traceback.format_exc(limit=3)})
        model_cases.release(device)
        bar.update(1)
    if "profile" in sections and device == "cuda":
        try:
            attention_cases.bench_attention(results, specs, preset.train_batch, dtype, device)
        except Exception as error:
            results.errors.append({"section": "attention", "error": f"{type(error).__name__}: {error}",
                                   "traceback": traceback.format_exc(limit=3)})
    if kernel_tasks:
        try:
            kernel_cases.bench_kernels(results, preset.kernel_widths, preset.kernel_batch, dtype, device,
                                       kernel_providers, copy_gbs, min_reps=preset.reps, progress=bar)
        except Exception as error:
            results.errors.append({"section": "kernels", "error": f"{type(error).__name__}: {error}",
                                   "traceback": traceback.format_exc(limit=3)})
    bar.close()

    env = environment(device)
    env["attention_paths"] = attention_paths()
    env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    meta = {"environment": env, "preset": preset.name, "description": preset.description,
            "dtype": str(dtype).replace("torch.", ""), "providers": list(chosen), "sections": list(sections),
            "notes": notes, "baselines": preset.baselines}
    path = results.write(out, "bench", dict(meta))
    written = write_plots(results, out, preset.baselines, kernel_providers) if plots else []
    return {"json": path, "csv": path[:-5] + ".csv", "plots": written, "results": results, "meta": meta,
            "markdown": markdown(results, meta, kernel_providers)}


def _run_task(results, section, spec, provider, preset, device, dtype, macs, peak, profile_to=None):
    if section == "train":
        x_label = f"B={preset.train_batch} {str(dtype).replace('torch.', '')}"
        model_cases.bench_train(results, spec, provider, device, dtype, preset.train_batch, preset.reps,
                                preset.warmup, x_label, macs, peak, profile_to=profile_to)
    elif section == "inference":
        model_cases.bench_inference(results, spec, provider, device, dtype, preset.inference_batches, preset.reps,
                                    preset.warmup, macs, peak)
    else:
        model_cases.bench_sampling(results, spec, provider, device, dtype, preset.sample_batch, preset.sample_steps,
                                   preset.reps, preset.warmup, graphs=device == "cuda")


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="case", dynamic_ncols=True)
