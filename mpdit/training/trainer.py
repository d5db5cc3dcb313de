"""`mpdit train`: flow-matching training on one process or under torchrun (DDP / FSDP2), resumable.

Reads top to bottom like DiT's train.py: fit() builds the run (model, EMA, optimizer, random
streams; restored from a checkpoint when resuming), then its one loop steps it: the train step
(mpdit.training.step), a metrics record, save(), a sample grid, an evaluation. train() is fit()
in a process group of its own (one process, or torchrun's).
"""
import contextlib
import dataclasses
import os
import signal
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mpdit.compat.layouts import check_layout
from mpdit.data import data_shape, latents_info, open_dataset
from mpdit.diffusion.sampling import sample
from mpdit.io import load_checkpoint, read
from mpdit.io.images import save_grid, to_uint8
from mpdit.io.run_lock import RunDirInUse, RunLock
from mpdit.models import get_config
from mpdit.signals import StopSignals
from mpdit.training import checkpoint
from mpdit.training.config import TrainConfig
from mpdit.training.data import DataPosition, ResumableSampler
from mpdit.training.distributed import full_state, load_full_state
from mpdit.training.evaluation import evaluate_ema
from mpdit.training.log import say
from mpdit.training.metrics import MetricsLog
from mpdit.training.step import TrainStep, build_train_step, learning_rate
from mpdit.world import World, broadcast, joined_world


class TrainingStopped(Exception):
    """SIGINT / SIGTERM: the run finished its step and wrote a checkpoint; `--resume auto` continues."""

    def __init__(self, signum: int, step: int, path: str):
        super().__init__(f"stopped at step {step}; checkpoint {path}")
        self.signum, self.step, self.path = signum, step, path


class _StopRequests(StopSignals):
    """SIGINT / SIGTERM set a flag instead of killing the process; the loop stops after the
    optimizer step in progress. Under torchrun the ranks agree (a MAX all-reduce each step), so
    every rank saves the same step."""

    def __init__(self, world: World):
        super().__init__()
        self.world = world

    def agreed(self) -> int:
        """The signal to stop for (0: go on), the same on every rank."""
        if self.world.size == 1:
            return self.signum
        flag = torch.tensor([self.signum], device=self.world.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())


@dataclass
class TrainingRun:
    """What a run carries from one step to the next."""

    config: TrainConfig
    world: World
    train_step: TrainStep  # model, EMA, optimizer, random stream
    model_config: dict
    dataset_size: int
    step: int = 0
    position: DataPosition = DataPosition()  # of the next step, in global samples (the same on every rank)


# --------------------------------------------------------------------------- entry points
def train(config: TrainConfig) -> dict:
    """Run (or resume) training; returns the last metrics record."""
    config.validate()
    with joined_world() as world:
        return fit(config, world)[1]  # the run (model, optimizer) dropped before the process group ends


def fit(config: TrainConfig, world: World) -> tuple:
    """Train up to config.steps in a process group; returns (the run, its last metrics record).
    The loop: a step, a metrics record every log_every steps, a checkpoint every
    checkpoint_every, a sample grid, an evaluation; on SIGINT / SIGTERM, a checkpoint and stop."""
    config.validate_for(world)
    micro, accumulation = batch_split(config, world)
    dataset = open_dataset(config.dataset, config.image_size)
    get_config(config.model, **dataset_overrides(config, dataset))  # the model and its overrides, checked
    with claimed_run_dir(config, world):
        run = build(config, world, dataset)
        if world.main:  # before the first step, which can take minutes (compilation, a slow first batch)
            parameters = sum(p.numel() for p in run.train_step.ema.parameters()) / 1e6
            say(config.run_dir, f"{config.model}, {parameters:.1f} M parameters, {world.device.type} x {world.size} "
                f"process(es), {config.dataset} ({len(dataset)} images), steps {run.step} -> {config.steps}, "
                f"run dir {config.run_dir}")
        log = MetricsLog(config.run_dir, world.main)
        log.keep_until(run.step)  # a resumed run logs the steps after its checkpoint again: once each
        record, window = {}, _ImagesPerSecond()
        with _StopRequests(world) as stop:  # from before the loader's workers start: this process owns the stop
            batches = iter(data_loader(dataset, micro, run))
            progress = _progress(config.steps, run.step, world.main)
            try:
                while run.step < config.steps:
                    loss, grad_norm, applied = run.train_step([next(batches) for _ in range(accumulation)], run.step)
                    run.step += 1
                    run.position = run.position.advance(1, config.global_batch_size, run.dataset_size)
                    window.count(config.global_batch_size, skipped=not applied)
                    progress.update(1)
                    last = run.step == config.steps
                    if run.step % config.log_every == 0 or last:
                        record = _log_step(run, log, progress, loss, grad_norm, window)
                    if run.step % config.checkpoint_every == 0 or last:
                        save(run)
                    if config.sample_every and (run.step % config.sample_every == 0 or last):
                        if world.main or run.train_step.sharded:  # a sharded EMA samples on every rank; rank 0 writes
                            with _phase(progress, "drawing the sample grid"):
                                _sample_grid(run.train_step.ema, config, run.step, write=world.main)
                    if config.evaluation.every and (run.step % config.evaluation.every == 0 or last):
                        with _phase(progress, "evaluating the EMA"):
                            evaluate_ema(run, log)
                    window.restart_if_logged()  # the next window times training alone, not the work above
                    signum = stop.agreed()
                    if signum and not last:
                        _stop(run, signum, progress)
            finally:
                progress.close()  # an error then starts its own line
                del batches  # the loader's workers end here, not at interpreter exit (they ignore SIGTERM)
        final = {**record, "step": run.step, "final": True}
        log.write(final)
        if world.main:
            say(config.run_dir, f"finished at step {run.step}", stderr=False)
        return run, final


class _ImagesPerSecond:
    """Training images per second over the steps since the last metrics record, and the steps a
    non-finite loss skipped."""

    def __init__(self):
        self.start, self.images, self.skipped, self.logged = time.perf_counter(), 0, 0, False

    def count(self, images: int, skipped: bool) -> None:
        self.images += images
        self.skipped += skipped

    def rate(self) -> float:
        self.logged = True
        return self.images / (time.perf_counter() - self.start)

    def restart_if_logged(self) -> None:
        if self.logged:
            self.start, self.images, self.logged = time.perf_counter(), 0, False


def _log_step(run, log, progress, loss: float, grad_norm: float, window: _ImagesPerSecond) -> dict:
    """The step's metrics record: metrics.jsonl (and TensorBoard), the progress bar, log.txt."""
    config = run.config
    record = {"step": run.step, "loss": loss, "grad_norm": grad_norm, "lr": learning_rate(config, run.step - 1),
              "images_per_s": window.rate(), "skipped_steps": window.skipped}
    log.write(record)
    progress.set_postfix(loss=f"{loss:.4f}", img_s=f"{record['images_per_s']:.1f}")
    if run.world.main:
        say(config.run_dir, f"step {run.step}: loss {loss:.4f}, grad norm {grad_norm:.4f}, "
            f"{record['images_per_s']:.1f} images/s", stderr=False)
    return record


def _stop(run, signum: int, progress) -> None:
    """A stop request: the step's checkpoint (unless just written), then TrainingStopped."""
    config = run.config
    if run.step % config.checkpoint_every:  # not saved at this step yet
        save(run)
    progress.close()
    if run.world.main:
        say(config.run_dir, f"stopped by signal {signum} at step {run.step}", stderr=False)
    raise TrainingStopped(signum, run.step, checkpoint.checkpoint_path(config.run_dir, run.step))


@contextlib.contextmanager
def claimed_run_dir(config: TrainConfig, world: World):
    """The run folder made and locked by rank 0 for the whole block (a second job on it is
    refused, on every rank); a new run (no --resume) into a folder holding another is refused;
    the partial checkpoint of a writer that is gone is removed."""
    make_run_dir(config.run_dir)  # only now: a refused command leaves nothing behind
    lock = RunLock(config.run_dir)
    refusal = None
    if world.main:
        try:
            lock.acquire()
            if not config.resume:
                check_no_earlier_run(config.run_dir)
        except ValueError as error:
            lock.release()
            refusal = (isinstance(error, RunDirInUse), str(error))
    refusal = broadcast(world, refusal)  # every rank stops, not only rank 0
    if refusal:
        in_use, message = refusal
        raise (RunDirInUse if in_use else ValueError)(message)
    try:
        if world.main:
            for path in checkpoint.remove_stale_partials(config.run_dir):
                say(config.run_dir, f"removed {path}, the partial checkpoint of a writer that is gone")
        yield
    finally:
        lock.release()


def check_no_earlier_run(run_dir: str) -> None:
    """A new run (no --resume) into a folder that holds another run's records would mix the two
    histories (metrics.jsonl started over, checkpoints of two runs, maybe two models, for --resume
    auto to pick from): refused, nothing touched."""
    found = checkpoint.run_records(run_dir)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise ValueError(f"run_dir={run_dir!r}: holds an earlier run ({shown}); continue it with --resume auto, or "
                         "train into another --run-dir")


def make_run_dir(run_dir: str) -> None:
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as error:  # a file, or a folder under a file, or no permission
        raise ValueError(f"run_dir={run_dir!r}: cannot be a folder here ({error.strerror})") from None


# --------------------------------------------------------------------------- build
def prepare(config: TrainConfig, world: World) -> tuple:
    """(the run at its first step, an endless iterator of this rank's micro-batches): what the
    loop starts from, for a script that steps a run itself (benchmarks/fp8_quality.py) with
    `run.train_step(micro_batches, step)`. Nothing is written."""
    config.validate()
    dataset = open_dataset(config.dataset, config.image_size)
    micro, _ = batch_split(config, world)
    run = build(config, world, dataset)
    return run, iter(data_loader(dataset, micro, run))


def batch_split(config: TrainConfig, world: World) -> tuple:
    """(micro-batch per process, micro-batches accumulated per optimizer step)."""
    if config.global_batch_size % world.size:
        raise ValueError(f"global_batch_size={config.global_batch_size}: expected a multiple of the "
                         f"{world.size} processes")
    per_rank = config.global_batch_size // world.size
    micro = config.micro_batch_size or per_rank
    if per_rank % micro:
        raise ValueError(f"micro_batch_size={micro}: expected a divisor of the per-process batch {per_rank}")
    return micro, per_rank // micro


def dataset_overrides(config: TrainConfig, dataset) -> dict:
    """create_model overrides with the input shape and classes the dataset dictates; an override
    that says otherwise is refused (it would be recorded in the checkpoint, and not be what ran)."""
    data = data_shape(dataset)
    why = {}
    if config.dataset == "digits":  # pixels: the latent size is the image size
        why = {"latent_size": f"for pixel data the latent size is the image size (image_size={config.image_size}, "
                              "--image-size)"}
    for name, value in data.items():
        given = config.overrides.get(name)
        if given is not None and given != value:
            raise ValueError(f"{name}={given}: " + why.get(name, f"dataset={config.dataset!r} has {name}={value}"))
    return {**config.overrides, **data}


def newest_readable(run_dir: str, warn: bool = True) -> tuple:
    """(path, state) of the newest checkpoint in run_dir that loads, or (None, None); an
    unreadable newer one (cut short by a full disk, say) is named and passed over."""
    for path in reversed(checkpoint.paths(run_dir)):
        try:
            return path, load_checkpoint(path)
        except checkpoint.CheckpointError as error:
            if warn:
                say(run_dir, f"warning: skipping {error}")
    return None, None


def resume_state(config: TrainConfig, world: World, model_config: dict):
    """The checkpoint to resume from (checked against this model and world), or None."""
    if not config.resume:
        return None
    if config.resume == "auto":
        path, state = newest_readable(config.run_dir, warn=world.main)
        if state is None:
            if world.main:  # said aloud: a mistyped --run-dir starts afresh
                say(config.run_dir, f"no checkpoint in {config.run_dir}; starting from step 0")
            return None
    else:
        path, state = config.resume, load_checkpoint(config.resume)
    checkpoint.check_same_model(state, path, model_config)
    changed = checkpoint.check_same_run(state, path, dataclasses.asdict(config))
    if changed and world.main:
        say(config.run_dir, f"warning: resuming with changed settings: {'; '.join(changed)}")
    if world.main:
        say(config.run_dir, f"resuming from {path} at step {state['step']}")
        aside, steps = checkpoint.set_aside_newer(config.run_dir, state["step"])
        if aside:  # a rollback: the abandoned steps are kept, not pruned or resumed by --resume auto
            say(config.run_dir, f"rolling back: moved the checkpoints of steps {', '.join(map(str, steps))} and a "
                f"copy of metrics.jsonl to {aside}")
    return state


def load_init(model, path: str, run_dir: str = None) -> None:
    """Weights only (fine-tuning): an engine file whose tensors match this model key for key;
    said into `run_dir`'s log (rank 0's; None: silent)."""
    saved = read(path)
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    check_layout(saved["state_dict"], expected, "engine", what=f"init={path!r}")
    model.load_state_dict(saved["state_dict"])
    family = (saved.get("origin") or {}).get("family")
    if run_dir is not None:
        say(run_dir, f"initial weights from {path}")
    if run_dir is not None and family in ("dit", "sit"):  # the weights run, but were trained for another objective
        say(run_dir, f"warning: {path} holds {family} weights trained with "
            + ("DDPM eps prediction" if family == "dit" else "t = 0 noise and velocity data - noise")
            + "; they are fine-tuned here with the engine's flow matching (t = 1 noise, velocity noise - data)")


def build(config: TrainConfig, world: World, dataset) -> TrainingRun:
    """The run's train step: fresh, or as the checkpoint to resume left it."""
    overrides = dataset_overrides(config, dataset)
    model_config = dataclasses.asdict(get_config(config.model, **overrides))
    state = resume_state(config, world, model_config)
    said_into = config.run_dir if world.main else None
    initial = (lambda model: load_init(model, config.init, said_into)) if config.init and state is None else None
    step = build_train_step(config, world, overrides, initial_weights=initial)
    run = TrainingRun(config, world, step, model_config, len(dataset))
    if state is not None:  # on any number of processes: nothing saved is per process
        load_full_state(state, step.model, step.ema, step.optimizer, step.sharded)
        run.step, run.position = state["step"], data_position(state, len(dataset))
        torch.set_rng_state(state["rng"]["torch"])
    return run


def data_position(state: dict, dataset_size: int) -> DataPosition:
    """The checkpoint's position in the data order; a checkpoint of an earlier version counted
    micro-batches per process, which its writer's world and micro-batch turn into samples."""
    data = state["data"]
    if "epoch" in data:
        return DataPosition(data["epoch"], data["offset"])
    config, world = state["train_config"], len(state["rng"]["generators"])
    micro = config["micro_batch_size"] or config["global_batch_size"] // world
    epoch, taken = divmod(data["batches_consumed"], dataset_size // (micro * world))
    return DataPosition(epoch, taken * micro * world)


def data_loader(dataset, micro: int, run: TrainingRun):
    """An endless loader of this rank's micro-batches, from the run's position in the data order."""
    world, config = run.world, run.config
    sampler = ResumableSampler(len(dataset), config.global_batch_size, micro, world.rank, world.size, config.seed,
                               start=run.position)
    return torch.utils.data.DataLoader(dataset, batch_size=micro, sampler=sampler, num_workers=config.num_workers,
                                       pin_memory=world.device.type == "cuda", drop_last=True,
                                       persistent_workers=config.num_workers > 0,
                                       worker_init_fn=leave_stop_signals_to_the_main_process)


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A loader worker ignores SIGINT and SIGTERM. A scheduler's SIGTERM (scancel, a preemption,
    kill -- -PGID) or a terminal's Ctrl-C reaches every process of the group, workers too, and a
    worker killed by it ends the run ("DataLoader worker ... killed by signal") before the main
    process can finish its step and save; the main process stops, then ends its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# --------------------------------------------------------------------------- save
def save(run: TrainingRun) -> None:
    """A checkpoint of the whole run at its step (a collective: every rank calls it; rank 0 writes)."""
    config, world, step = run.config, run.world, run.train_step
    model_state, ema_state, optimizer_state = full_state(step.model, step.ema, step.optimizer, step.sharded)
    if world.main:
        checkpoint.save({"model": model_state, "ema": ema_state, "optimizer": optimizer_state,
                         "step": run.step, "data": run.position._asdict(), "rng": {"torch": torch.get_rng_state()},
                         "train_config": dataclasses.asdict(config), "model_config": run.model_config,
                         "latents": None if config.dataset == "digits" else latents_info(config.dataset)},
                        config.run_dir, run.step)
        checkpoint.prune(config.run_dir, config.keep_checkpoints)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


@contextlib.contextmanager
def _phase(progress, what: str):
    """`what` on the progress bar while it runs: the bar does not move meanwhile, maybe for minutes."""
    progress.set_description(what)
    try:
        yield
    finally:
        progress.set_description("")


def _sample_grid(ema, config: TrainConfig, step: int, write: bool = True) -> None:
    """A grid of EMA samples, one row per class (pixel datasets; latent runs decode in `mpdit sample`)."""
    if config.dataset != "digits":  # latents: decoded through the VAE by `mpdit sample`
        return
    classes = min(ema.config.num_classes, 10)
    labels = torch.arange(classes, device=next(ema.parameters()).device).repeat_interleave(4)
    generator = torch.Generator(device=labels.device).manual_seed(step)
    images = sample(ema, labels, method="euler", steps=32, cfg_scale=2.0, generator=generator)
    if not write:
        return
    os.makedirs(os.path.join(config.run_dir, "samples"), exist_ok=True)
    save_grid(to_uint8(images), labels.tolist(), os.path.join(config.run_dir, "samples", f"step-{step:08d}.png"))
