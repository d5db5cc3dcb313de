"""One optimizer step, the same for everything that trains or times training (`mpdit train`, the
bench's training case, the FP8 gate): DiT's train.py loop body. For each micro-batch the
flow-matching loss under the run's autocast and its backward (gradients accumulated, weighted by
the micro-batch's share of the step's images); then gradient clipping, AdamW, the EMA update.
"""
import contextlib
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.distributed as dist
from torch.profiler import record_function

from mpdit.diffusion.flow import FlowDraws, draw_flow, flow_matching_loss
from mpdit.models import create_model
from mpdit.models.float8 import convert_blocks_to_float8
from mpdit.training.config import TrainConfig
from mpdit.training.data import micro_batch_start
from mpdit.training.distributed import shard
from mpdit.world import World

# Ranges the bench's profile attributes kernels by (mpdit.bench.profile).
OPTIMIZER_RANGE, EMA_RANGE = "mpdit.optimizer", "mpdit.ema"


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message names the step."""


class StepResult(NamedTuple):
    loss: float  # mean over the step's images (and processes)
    grad_norm: float  # before clipping
    applied: bool  # False: a non-finite loss or norm, the step dropped (on_nonfinite="skip")


def learning_rate(config: TrainConfig, step: int) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr


def autocast(config: TrainConfig, device: torch.device):
    bf16 = config.precision in ("bf16", "fp8") or (config.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def ema_decay_at(config: TrainConfig, step: int) -> float:
    """The EMA decay of the update after `step` completed steps: with warm-up the EMA follows the
    weights closely early on (0.1 at step 0, 0.55 at 10, 0.991 at 1000), as common diffusion
    trainers do, then settles at ema_decay."""
    if not config.ema_warmup:
        return config.ema_decay
    return min(config.ema_decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    pairs = [(e, p) for e, p in zip(ema.parameters(), model.parameters()) if p.requires_grad]
    torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1.0 - decay)


@dataclass
class TrainStep:
    """The model, its EMA and optimizer, and the step that updates them."""

    config: TrainConfig
    world: World
    model: torch.nn.Module  # unwrapped: what checkpoints hold
    forward: Callable  # the model as trained: DDP- and/or compile-wrapped
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sharded: bool  # FSDP2

    def draws(self, step: int, micro_batches: list) -> FlowDraws:
        """Times, noise and label dropout of the step's whole global batch, drawn from a generator
        seeded by (seed, step): every process draws the same and takes its rows, so they do not
        depend on the number of processes, and a resumed run draws what it would have drawn."""
        sample_shape = micro_batches[0][0].shape[1:]
        global_batch = sum(len(x) for x, _ in micro_batches) * self.world.size
        generator = torch.Generator(device=self.world.device).manual_seed(step_seed(self.config.seed, step))
        config = self.config
        return draw_flow((global_batch, *sample_shape), time_sampler=config.time_sampler, time_mean=config.time_mean,
                         time_std=config.time_std, class_dropout=config.class_dropout, device=self.world.device,
                         generator=generator)

    def __call__(self, micro_batches: list, step: int) -> StepResult:
        """One optimizer step over `micro_batches` [(x, y)], after `step` completed steps.
        A non-finite loss or norm raises TrainingError, or with on_nonfinite="skip" drops the step."""
        config, world, model = self.config, self.world, self.model
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        images = sum(len(x) for x, _ in micro_batches)
        ddp = world.size > 1 and not self.sharded
        loss_sum = torch.zeros((), device=world.device)
        draws = self.draws(step, micro_batches)
        micro = len(micro_batches[0][0])
        for index, (x, y) in enumerate(micro_batches):
            x, y = x.to(world.device, non_blocking=True), y.to(world.device, non_blocking=True)
            last = index == len(micro_batches) - 1
            if self.sharded:
                model.set_requires_gradient_sync(last)
            with self.forward.no_sync() if ddp and not last else contextlib.nullcontext():
                with autocast(config, world.device):
                    start = micro_batch_start(index, world.rank, world.size, micro)
                    loss = flow_matching_loss(self.forward, x, y, null_class=model.config.num_classes,
                                              draws=draws.rows(start, start + len(x)))
                (loss * (len(x) / images)).backward()
            loss_sum += loss.detach() * (len(x) / images)
        with record_function(OPTIMIZER_RANGE):
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
            if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
                grad_norm = grad_norm.full_tensor()
            if world.size > 1:
                dist.all_reduce(loss_sum)
                loss_sum /= world.size
            loss_value, norm_value = loss_sum.item(), grad_norm.item()
            applied = math.isfinite(loss_value) and math.isfinite(norm_value)
            if applied:
                self.optimizer.step()
        if applied:
            with record_function(EMA_RANGE):
                update_ema(self.ema, model, ema_decay_at(config, step))
        self.optimizer.zero_grad(set_to_none=True)
        if not applied and config.on_nonfinite == "stop":
            raise TrainingError(f"non-finite loss {loss_value} / gradient norm {norm_value} at step {step + 1}; "
                                "checkpoints so far are kept (--on-nonfinite skip drops such steps instead)")
        return StepResult(loss_value, norm_value, applied)


def build_train_step(config: TrainConfig, world: World, overrides: dict, initial_weights=None) -> TrainStep:
    """A fresh model (seeded by config.seed: the same on every rank), its EMA and AdamW, wrapped as
    config says (float8, FSDP2 or DDP, torch.compile).
    initial_weights(model): loads weights into the new model before the EMA copies it."""
    torch.manual_seed(config.seed)
    model = create_model(config.model, kernel_backend=config.kernel_backend, **overrides).to(world.device)
    if initial_weights is not None:
        initial_weights(model)
    if config.precision == "fp8":  # before the EMA copy and sharding; the weights' names are unchanged
        convert_blocks_to_float8(model, world.device)
    ema = create_model(config.model, **overrides).to(world.device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    ema.eval()
    sharded = config.parallel == "fsdp" and world.size > 1
    if sharded:  # the EMA is sharded alike, so its update stays shard-local
        shard(model)
        shard(ema)
    # one fused kernel for the whole update on a GPU (sharded DTensor parameters keep the default)
    fused = {"fused": True} if world.device.type == "cuda" and not sharded else {}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay, **fused)
    model.check_values = False  # the data was validated when it was opened: no device syncs per call
    forward = model
    if world.size > 1 and not sharded:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)
    if config.compile:
        forward = torch.compile(forward, mode=config.compile_mode)
    return TrainStep(config, world, model, forward, ema, optimizer, sharded)


def step_seed(seed: int, step: int) -> int:
    """The seed of a step's random draws: distinct for every (seed, step) a run can reach."""
    return (seed % 2**31) * 2**32 + step
