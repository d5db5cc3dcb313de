"""Whole-model cases: training step, inference, guided sampling, CUDA-graph replay. Each
bench_<section>(plan, case, results, ceilings) adds the rows of one ModelCase.

A provider is a kernel backend plus an optional torch.compile (mpdit.bench.providers).
Inputs rotate over a few batches so repeated runs do not replay one cached batch.
"""
import contextlib
import dataclasses
import gc
import itertools
import os

import torch

from mpdit.bench.presets import ModelSpec
from mpdit.bench.profile import profile_step
from mpdit.bench.providers import split
from mpdit.bench.results import Shape, dtype_name
from mpdit.bench.timing import time_steps
from mpdit.diffusion.guidance import GuidedVelocity
from mpdit.diffusion.sampling import euler, graphed_velocity
from mpdit.models import create_model
from mpdit.models.float8 import convert_blocks_to_float8
from mpdit.training.config import TrainConfig
from mpdit.training.step import TrainStep, build_train_step
from mpdit.world import World

INPUT_SETS = 3
GUIDANCE = 1.5  # the guidance scale of the timed sampling


def build(spec: ModelSpec, provider: str, device: str):
    """(model, callable): the callable is the compiled model for the compile providers."""
    parts = split(provider)
    model = create_model(spec.name, kernel_backend=parts.backend, **spec.overrides).to(device)
    model.check_values = False  # the benchmark's inputs are valid: keep device syncs out of the timings
    if parts.float8:
        convert_blocks_to_float8(model, device)
    forward = torch.compile(model, mode=parts.compile_mode) if parts.compiled else model
    return model, forward


def release(device: str) -> None:
    """Free what the last case left (its model and optimizer die with its function's frame)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def latent_batches(model, batch: int, device: str):
    cfg = model.config
    shape = (batch, cfg.in_channels, cfg.latent_size, cfg.latent_size)
    return [(torch.randn(shape, device=device), torch.rand(batch, device=device),
             torch.randint(0, cfg.num_classes, (batch,), device=device)) for _ in range(INPUT_SETS)]


def autocast_for(device: str, dtype: torch.dtype):
    return torch.autocast(device, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()


def train_step_for(spec: ModelSpec, provider: str, device: str, dtype: torch.dtype) -> TrainStep:
    """The trainer's own step (mpdit.training.step) for the model as `provider` runs it, at the
    trainer's defaults (AdamW, clipping at 1, EMA); dtype float32 or bfloat16 (autocast)."""
    parts = split(provider)
    precision = "fp8" if parts.float8 else {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    config = TrainConfig(model=spec.name, dataset="bench", steps=1, global_batch_size=1, run_dir="-",
                         kernel_backend=parts.backend, precision=precision, compile=parts.compiled,
                         compile_mode=parts.compile_mode or "default", num_workers=0, overrides=dict(spec.overrides))
    return build_train_step(config, World(device=torch.device(device)), spec.overrides)


def bench_train(plan, case, results, ceilings) -> None:
    """The trainer's step on the preset's batch: forward, backward, gradient clipping, AdamW (fused
    on CUDA), EMA update. On CUDA out-of-memory the step is split into micro-batches with gradient
    accumulation (same images per step). With the profile section the step's time is also broken
    down (mpdit.bench.profile) and its Chrome trace written into the plan's folder."""
    spec, provider, device, batch = case.spec, case.provider, plan.device, plan.preset.train_batch
    train_step = train_step_for(spec, provider, device, plan.dtype)
    batches = latent_batches(train_step.model, batch, device)
    micro = batch
    while True:
        done = {"steps": 0}

        def step():
            latents, _, labels = batches[done["steps"] % INPUT_SETS]
            chunks = [(latents[start:start + micro], labels[start:start + micro]) for start in range(0, batch, micro)]
            train_step(chunks, done["steps"])
            done["steps"] += 1

        try:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            timing = time_steps(step, device, reps=plan.preset.reps, warmup=plan.preset.warmup)
            break
        except torch.cuda.OutOfMemoryError:
            train_step.optimizer.zero_grad(set_to_none=True)
            release(device)
            if micro == 1:
                raise
            micro //= 2
    seconds = timing["median_ms"] / 1e3
    shape = Shape(batch=batch, dtype=dtype_name(plan.dtype))
    tflops = 3 * 2 * ceilings.macs[spec.label] * batch / seconds / 1e12  # backward ~ 2x the forward's FLOPs
    add = lambda mode, metric, unit, value: results.add(spec.label, provider, mode, metric, unit, shape, value)
    for metric in ("median_ms", "p20_ms", "p80_ms", "warmup_ms"):
        add("train", metric, "ms", timing[metric])
    add("train", "throughput", "images/s", batch / seconds)
    add("train", "achieved", "TFLOP/s", tflops)
    add("train", "mfu", "%", 100 * tflops / ceilings.matmul_tflops)
    add("train", "micro_batch", "images", micro)
    if device == "cuda":
        add("train", "peak_memory", "GiB", torch.cuda.max_memory_allocated() / 2 ** 30)
    if "profile" in plan.sections:
        name = f"trace_{spec.label}_{provider}".replace("/", "-").replace(" ", "").replace("+", "-")
        breakdown = profile_step(step, device, trace_path=os.path.join(plan.out, name + ".json.gz"))
        for category, value in breakdown.items():
            if category != "top":
                add("profile", category, "ms", value)
        for kernel, ms in breakdown["top"]:  # rows, so that a resumed or isolated run keeps them
            add("top_kernel", kernel, "ms", ms)


@torch.inference_mode()
def bench_inference(plan, case, results, ceilings) -> None:
    """Forward latency at each batch size (batch 1 = latency, large batch = throughput)."""
    model, forward = build(case.spec, case.provider, plan.device)
    for batch in plan.preset.inference_batches:
        shape = Shape(batch=batch, dtype=dtype_name(plan.dtype))
        inputs = latent_batches(model, batch, plan.device)
        calls = itertools.count()

        def call():
            x, t, y = inputs[next(calls) % INPUT_SETS]
            with autocast_for(plan.device, plan.dtype):
                forward(x, t, y)

        timing = time_steps(call, plan.device, reps=plan.preset.reps, warmup=plan.preset.warmup)
        seconds = timing["median_ms"] / 1e3
        add = lambda metric, unit, value: results.add(case.spec.label, case.provider, "inference", metric, unit,
                                                      shape, value)
        for metric in ("median_ms", "p20_ms", "p80_ms"):
            add(metric, "ms", timing[metric])
        add("throughput", "images/s", batch / seconds)
        tflops = 2 * ceilings.macs[case.spec.label] * batch / seconds / 1e12
        add("mfu", "%", 100 * tflops / ceilings.matmul_tflops)


@torch.inference_mode()
def bench_sampling(plan, case, results, ceilings) -> None:
    """Guided Euler sampling at each batch size: one guided step timed over the repetitions (mode
    sample_step), and one full run per step count timed once (mode sample_run, the steps in its
    Shape); on CUDA the same with every evaluation replayed from a CUDA graph (metrics graph_*:
    sample(..., cuda_graph=True)'s GraphedVelocity, captured per batch size)."""
    device, dtype, preset = plan.device, plan.dtype, plan.preset
    model, _ = build(case.spec, case.provider, device)  # the plan sends eager providers only
    config = model.config
    for batch in preset.sample_batches:
        labels = torch.randint(0, config.num_classes, (batch,), device=device)
        noise = torch.randn(batch, config.in_channels, config.latent_size, config.latent_size, device=device)
        shape = Shape(batch=batch, dtype=dtype_name(dtype), guidance=GUIDANCE)
        velocities = {"": GuidedVelocity(model, labels, cfg_scale=GUIDANCE)}
        if device == "cuda":
            with autocast_for(device, dtype):
                velocities["graph_"] = graphed_velocity(model, labels, noise, GUIDANCE, None, (0.0, 1.0))
        add = lambda mode, metric, at, value: results.add(case.spec.label, case.provider, mode, metric, "ms", at,
                                                          value)
        for prefix, velocity in velocities.items():
            with autocast_for(device, dtype):
                step = time_steps(lambda: noise - 0.02 * velocity(noise, 0.5), device, reps=preset.reps,
                                  warmup=preset.warmup)
                for metric in ("median_ms", "p20_ms", "p80_ms"):
                    add("sample_step", prefix + metric, shape, step[metric])
                for steps in preset.sample_steps:
                    run = time_steps(lambda: euler(velocity, noise, steps), device, reps=1, warmup=0)
                    add("sample_run", prefix + "run_ms", dataclasses.replace(shape, steps=steps), run["median_ms"])
