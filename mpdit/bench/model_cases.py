"""Whole-model cases: training step, inference, guided sampling, CUDA-graph replay.

A provider is a kernel backend plus an optional torch.compile (mpdit.bench.providers).
Inputs rotate over a few batches so repeated runs do not replay one cached batch.
"""
import contextlib
import gc
import os
from dataclasses import dataclass, field

import torch

from mpdit.bench.profile import profile_step
from mpdit.bench.providers import split
from mpdit.bench.timing import Shape, dtype_name, time_steps
from mpdit.diffusion.guidance import GuidedVelocity
from mpdit.diffusion.sampling import euler, graphed_velocity
from mpdit.models import create_model
from mpdit.models.float8 import convert_blocks_to_float8
from mpdit.training.config import TrainConfig
from mpdit.training.step import TrainStep, build_train_step
from mpdit.world import World

INPUT_SETS = 3


@dataclass(frozen=True)
class ModelSpec:
    label: str
    name: str
    overrides: dict = field(default_factory=dict)


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


def bench_train(results, spec, provider, device, dtype, batch, reps, warmup, macs, peak_tflops, profile_to=None):
    """The trainer's step on `batch` images: forward, backward, gradient clipping, AdamW (fused on
    CUDA), EMA update. On CUDA out-of-memory the step is split into micro-batches with gradient
    accumulation (same images per step). profile_to: a folder for the profile's Chrome trace;
    then the step's time is also broken down (mpdit.bench.profile)."""
    train_step = train_step_for(spec, provider, device, dtype)
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
            timing = time_steps(step, device, reps=reps, warmup=warmup)
            break
        except torch.cuda.OutOfMemoryError:
            train_step.optimizer.zero_grad(set_to_none=True)
            release(device)
            if micro == 1:
                raise
            micro //= 2
    seconds = timing["median_ms"] / 1e3
    x_label = Shape(batch=batch, dtype=dtype_name(dtype))
    tflops = 3 * 2 * macs * batch / seconds / 1e12  # backward ~ 2x the forward's FLOPs
    add = lambda metric, unit, value: results.add(spec.label, provider, "train", metric, unit, x_label, value)
    for metric in ("median_ms", "p20_ms", "p80_ms", "warmup_ms"):
        add(metric, "ms", timing[metric])
    add("throughput", "images/s", batch / seconds)
    add("achieved", "TFLOP/s", tflops)
    add("mfu", "%", 100 * tflops / peak_tflops)
    add("micro_batch", "images", micro)
    if device == "cuda":
        add("peak_memory", "GiB", torch.cuda.max_memory_allocated() / 2 ** 30)
    if profile_to is not None:
        name = f"trace_{spec.label}_{provider}".replace("/", "-").replace(" ", "").replace("+", "-")
        breakdown = profile_step(step, device, trace_path=os.path.join(profile_to, name + ".json.gz"))
        for category, value in breakdown.items():
            if category != "top":
                results.add(spec.label, provider, "profile", category, "ms", x_label, value)
        for kernel, ms in breakdown["top"]:  # rows, so that a resumed or isolated run keeps them
            results.add(spec.label, provider, "top_kernel", kernel, "ms", x_label, ms)


@torch.inference_mode()
def bench_inference(results, spec, provider, device, dtype, batches_to_time, reps, warmup, macs, peak_tflops):
    """Forward latency at each batch size (batch 1 = latency, large batch = throughput)."""
    model, forward = build(spec, provider, device)
    for batch in batches_to_time:
        x_label = Shape(batch=batch, dtype=dtype_name(dtype))
        inputs = latent_batches(model, batch, device)
        state = {"i": 0}

        def call():
            x, t, y = inputs[state["i"] % INPUT_SETS]
            state["i"] += 1
            with autocast_for(device, dtype):
                forward(x, t, y)

        timing = time_steps(call, device, reps=reps, warmup=warmup)
        seconds = timing["median_ms"] / 1e3
        for metric in ("median_ms", "p20_ms", "p80_ms"):
            results.add(spec.label, provider, "inference", metric, "ms", x_label, timing[metric])
        results.add(spec.label, provider, "inference", "throughput", "images/s", x_label, batch / seconds)
        tflops = 2 * macs * batch / seconds / 1e12
        results.add(spec.label, provider, "inference", "mfu", "%", x_label, 100 * tflops / peak_tflops)


@torch.inference_mode()
def bench_sampling(results, spec, provider, device, dtype, batches, steps_list, reps, warmup, cfg_scale=1.5,
                   graphs=False):
    """Guided Euler sampling at each batch size: one full run per step count (timed once, after a
    warm-up step), one guided step timed `reps` times, and on CUDA the same with every evaluation
    replayed from a CUDA graph (sample(..., cuda_graph=True)'s GraphedVelocity, captured per batch size
    and kept with the model until the case ends)."""
    model, _ = build(spec, provider, device)  # the runner sends eager providers only
    cfg = model.config
    for batch in batches:
        labels = torch.randint(0, cfg.num_classes, (batch,), device=device)
        noise = torch.randn(batch, cfg.in_channels, cfg.latent_size, cfg.latent_size, device=device)
        x_label = Shape(batch=batch, dtype=dtype_name(dtype), guidance=cfg_scale)
        velocities = {"eager": GuidedVelocity(model, labels, cfg_scale=cfg_scale)}
        if graphs and device == "cuda":
            with autocast_for(device, dtype):
                velocities["graph"] = graphed_velocity(model, labels, noise, cfg_scale, None, (0.0, 1.0))
        for kind, velocity in velocities.items():
            _time_sampler(results, spec.label, provider, device, dtype, velocity, noise, steps_list, reps, warmup,
                          x_label, prefix="" if kind == "eager" else "graph_")


def _time_sampler(results, label, provider, device, dtype, velocity, noise, steps_list, reps, warmup, x_label,
                  prefix):
    def one_step(x):
        with autocast_for(device, dtype):
            return x - 0.02 * velocity(x, 0.5)

    step = time_steps(lambda: one_step(noise), device, reps=reps, warmup=warmup)
    for metric in ("median_ms", "p20_ms", "p80_ms"):
        results.add(label, provider, "sample_step", prefix + metric, "ms", x_label, step[metric])
    for steps in steps_list:
        with autocast_for(device, dtype):
            run = time_steps(lambda: euler(velocity, noise, steps), device, reps=1, warmup=0)
        results.add(label, provider, f"sample_{steps}_steps", prefix + "run_ms", "ms", x_label, run["median_ms"])
