"""`mpdit train`: flow-matching training on one process or under torchrun (DDP), resumable.

Defaults follow the paper's recipe (shared/reference/mpdit-notes.md, "Training"): AdamW
lr 1e-4 without weight decay, logit-normal times, class dropout 0.1, EMA 0.9999, bf16 on GPU.
"""
import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from mpdit.flow import TIME_SAMPLERS, flow_matching_loss
from mpdit.models import create_model, get_config
from mpdit.training import checkpoint
from mpdit.training.data import ResumableSampler, latents_info, open_dataset


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, ranks out of step); the message names the step."""


@dataclass
class TrainConfig:
    model: str
    dataset: str
    steps: int
    global_batch_size: int
    run_dir: str
    resume: str = None  # None, "auto" (latest checkpoint in run_dir) or a checkpoint path
    image_size: int = 16  # digits only: 16 or 32 pixels
    micro_batch_size: int = None  # per rank; None = global batch / world (no accumulation)
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0  # 0 = no clipping (the norm is still computed and checked)
    ema_decay: float = 0.9999
    time_sampler: str = "logit_normal"
    time_mean: float = 0.0
    time_std: float = 1.0
    class_dropout: float = 0.1
    seed: int = 0
    compile: bool = False
    parallel: str = "ddp"  # under torchrun: "ddp", or "fsdp" (FSDP2 fully_shard of each block and the model)
    kernel_backend: str = "auto"
    precision: str = "auto"  # "auto" = bf16 autocast on GPU, fp32 on CPU; or "fp32", "bf16"
    on_nonfinite: str = "stop"  # or "skip": drop the step, keep training
    checkpoint_every: int = 1000
    log_every: int = 10
    sample_every: int = 1000  # a PNG grid of EMA samples every N steps and at the end; 0 = never
    num_workers: int = 2
    overrides: dict = field(default_factory=dict)  # create_model overrides (fine_depth, ...)

    def validate(self) -> None:
        for name in ("steps", "global_batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size={self.micro_batch_size}: expected a positive integer")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: expected a positive learning rate")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay}: expected a value in [0, 1)")
        if self.time_sampler not in TIME_SAMPLERS:
            raise ValueError(f"time_sampler={self.time_sampler!r}: expected one of {TIME_SAMPLERS}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: expected auto, fp32 or bf16")
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel={self.parallel!r}: expected ddp or fsdp")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite={self.on_nonfinite!r}: expected stop or skip")
        if not 0.0 <= self.class_dropout <= 1.0:
            raise ValueError(f"class_dropout={self.class_dropout}: expected a probability in [0, 1]")


# --------------------------------------------------------------------------- distributed
@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    """torchrun's environment -> process group (nccl on GPU, gloo on CPU); else one process."""
    cuda = torch.cuda.is_available()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=torch.device("cuda") if cuda else torch.device("cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return World(dist.get_rank(), size, local_rank, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


# --------------------------------------------------------------------------- helpers
def model_overrides(config: TrainConfig, dataset) -> dict:
    overrides = dict(config.overrides)
    if config.dataset == "digits":  # pixels: 1 channel at image_size, 10 classes
        overrides.update(in_channels=1, latent_size=config.image_size, num_classes=dataset.num_classes)
    else:
        sample = dataset[0][0]
        overrides.update(in_channels=sample.shape[0], latent_size=sample.shape[-1], num_classes=dataset.num_classes)
    return overrides


def learning_rate(config: TrainConfig, step: int) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    pairs = [(e, p) for e, p in zip(ema.parameters(), model.parameters()) if p.requires_grad]
    torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1.0 - decay)


def parameter_digest(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum().item() for p in model.parameters()))


# FSDP2: parameters are sharded DTensors; checkpoints hold full (unsharded) state dicts.
def shard(model: torch.nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)


def _full(fn, *args, **kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return fn(*args, options=StateDictOptions(full_state_dict=True, cpu_offload=True), **kwargs)


def full_state(model, ema, optimizer, sharded: bool) -> tuple:
    """(model, ema, optimizer) state dicts, whole; with FSDP a collective, complete on rank 0."""
    if not sharded:
        return model.state_dict(), ema.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return (_full(get_model_state_dict, model), _full(get_model_state_dict, ema),
            _full(get_optimizer_state_dict, model, optimizer))


def load_full_state(state, model, ema, optimizer, sharded: bool) -> None:
    if not sharded:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    _full(set_model_state_dict, model, state["model"])
    _full(set_model_state_dict, ema, state["ema"])
    _full(set_optimizer_state_dict, model, optimizer, optim_state_dict=state["optimizer"])


class MetricsLog:
    """metrics.jsonl in the run folder (appended, so a resumed run continues it), and
    TensorBoard when it is installed."""

    def __init__(self, run_dir: str, enabled: bool):
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(os.path.join(run_dir, "tensorboard"))
            except ImportError:  # optional
                pass

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None and "step" in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])


# --------------------------------------------------------------------------- training
def train(config: TrainConfig) -> dict:
    """Run (or resume) training; returns the final metrics record."""
    config.validate()
    world = init_world()
    try:
        return _train(config, world)
    finally:
        if world.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, world: World) -> dict:
    if config.global_batch_size % world.size:
        raise ValueError(f"global_batch_size={config.global_batch_size}: expected a multiple of the "
                         f"{world.size} processes")
    per_rank = config.global_batch_size // world.size
    micro = config.micro_batch_size or per_rank
    if per_rank % micro:
        raise ValueError(f"micro_batch_size={micro}: expected a divisor of the per-process batch {per_rank}")
    accumulation = per_rank // micro
    os.makedirs(config.run_dir, exist_ok=True)

    dataset = open_dataset(config.dataset, config.image_size)
    overrides = model_overrides(config, dataset)
    model_config = dataclasses.asdict(get_config(config.model, **overrides))
    resume_path = checkpoint.latest(config.run_dir) if config.resume == "auto" else config.resume
    state = None
    if resume_path:
        state = checkpoint.load(resume_path)
        checkpoint.check_same_model(state, resume_path, model_config)
        saved_world = len(state["rng"]["generators"])
        if saved_world != world.size:  # the data order and random streams are per process
            raise checkpoint.CheckpointError(
                f"checkpoint={resume_path!r}: written by {saved_world} processes, resumed with {world.size}; "
                "resume with the same number of processes")

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = create_model(config.model, kernel_backend=config.kernel_backend, **overrides).to(world.device)
    ema = create_model(config.model, **overrides).to(world.device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    ema.eval()
    sharded = config.parallel == "fsdp" and world.size > 1
    if sharded:  # the EMA is sharded alike, so its update stays shard-local
        shard(model)
        shard(ema)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    generator = torch.Generator(device=world.device).manual_seed(config.seed * 1_000_003 + world.rank)
    step, consumed = 0, 0
    if state is not None:
        load_full_state(state, model, ema, optimizer, sharded)
        step, consumed = state["step"], state["data"]["batches_consumed"]
        generator.set_state(state["rng"]["generators"][world.rank])
        torch.set_rng_state(state["rng"]["torch"])

    model.check_values = False  # the dataset was validated when it was opened
    trained = model
    if world.size > 1 and not sharded:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)
    forward = torch.compile(trained) if config.compile else trained
    if world.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bf16 = config.precision == "bf16" or (config.precision == "auto" and world.device.type == "cuda")
    autocast = (lambda: torch.autocast(world.device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    sampler = ResumableSampler(len(dataset), micro, world.rank, world.size, config.seed, start_batch=consumed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=micro, sampler=sampler, num_workers=config.num_workers,
                                         pin_memory=world.device.type == "cuda", drop_last=True,
                                         persistent_workers=config.num_workers > 0)
    batches = iter(loader)
    log = MetricsLog(config.run_dir, world.main)
    progress = _progress(config.steps, step, world.main)
    record, skipped, window_start, window_images = {}, 0, time.perf_counter(), 0

    def save_checkpoint():
        generators = [None] * world.size
        if world.size > 1:
            dist.all_gather_object(generators, generator.get_state())
        else:
            generators = [generator.get_state()]
        model_state, ema_state, optimizer_state = full_state(model, ema, optimizer, sharded)
        if world.main:
            checkpoint.save({"model": model_state, "ema": ema_state, "optimizer": optimizer_state,
                             "step": step, "data": {"batches_consumed": consumed},
                             "rng": {"torch": torch.get_rng_state(), "generators": generators},
                             "train_config": dataclasses.asdict(config), "model_config": model_config,
                             "latents": None if config.dataset == "digits" else latents_info(config.dataset)},
                            config.run_dir, step)

    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        loss_sum = torch.zeros((), device=world.device)
        for index in range(accumulation):
            x, y = next(batches)
            consumed += 1
            x, y = x.to(world.device, non_blocking=True), y.to(world.device, non_blocking=True)
            last = index == accumulation - 1
            if sharded:
                model.set_requires_gradient_sync(last)
            no_sync = trained.no_sync if world.size > 1 and not sharded and not last else contextlib.nullcontext
            with no_sync():
                with autocast():
                    loss = flow_matching_loss(forward, x, y, time_sampler=config.time_sampler,
                                              time_mean=config.time_mean, time_std=config.time_std,
                                              class_dropout=config.class_dropout, null_class=model.config.num_classes,
                                              generator=generator)
                (loss / accumulation).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
            grad_norm = grad_norm.full_tensor()
        mean_loss = loss_sum / accumulation
        if world.size > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world.size
        loss_value, norm_value = mean_loss.item(), grad_norm.item()
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            update_ema(ema, model, config.ema_decay)
        else:
            optimizer.zero_grad(set_to_none=True)
            if config.on_nonfinite == "stop":
                raise TrainingError(f"non-finite loss {loss_value} / gradient norm {norm_value} at step {step + 1}; "
                                    "checkpoints so far are kept (--on-nonfinite skip drops such steps instead)")
            skipped += 1  # the step is dropped: no update, no EMA change
        step += 1
        window_images += config.global_batch_size
        progress.update(1)
        if step % config.log_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - window_start
            record = {"step": step, "loss": loss_value, "grad_norm": norm_value, "lr": learning_rate(config, step - 1),
                      "images_per_s": window_images / elapsed, "skipped_steps": skipped}
            log.write(record)
            progress.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{record['images_per_s']:.1f}")
            window_start, window_images = time.perf_counter(), 0
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint()
        if config.sample_every and (step % config.sample_every == 0 or step == config.steps):
            if world.main or sharded:  # a sharded EMA samples with every rank; rank 0 writes
                _sample_grid(ema, config, step, write=world.main)
    progress.close()

    digests = [None] * world.size
    if sharded:  # every rank holds a different shard: compare the gathered whole instead
        full = full_state(model, ema, optimizer, sharded)[0]
        digests = [float(sum(t.double().sum().item() for t in full.values()))] if world.main else []
    elif world.size > 1:
        dist.all_gather_object(digests, parameter_digest(model))
    else:
        digests = [parameter_digest(model)]
    final = {**record, "step": step, "final": True, "rank_parameter_digests": digests}
    log.write(final)
    if len(set(digests)) > 1:
        raise TrainingError(f"ranks hold different weights after step {step}: parameter digests {digests}")
    return final


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def _sample_grid(ema, config: TrainConfig, step: int, write: bool = True) -> None:
    """A grid of EMA samples, one row per class (pixel datasets; latent runs decode in `mpdit sample`)."""
    if config.dataset != "digits":  # latents: decoded through the VAE by `mpdit sample`
        return
    from mpdit.sampling import sample
    from mpdit.training.images import save_grid, to_uint8

    classes = min(ema.config.num_classes, 10)
    labels = torch.arange(classes, device=next(ema.parameters()).device).repeat_interleave(4)
    generator = torch.Generator(device=labels.device).manual_seed(step)
    images, _ = sample(ema, labels, method="euler", steps=32, cfg_scale=2.0, generator=generator)
    if not write:
        return
    os.makedirs(os.path.join(config.run_dir, "samples"), exist_ok=True)
    save_grid(to_uint8(images), os.path.join(config.run_dir, "samples", f"step-{step:08d}.png"), rows=classes)
