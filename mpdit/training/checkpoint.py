"""A run folder's checkpoints: named by step, found again by `--resume auto`, pruned, checked
against the run that resumes them.

A checkpoint is one file `ckpt-<step>.pt` in the run folder (its contents and the atomic write:
mpdit.io.checkpoint_file); model and ema are state dicts of the unwrapped model (no DDP or
torch.compile prefixes), so a crash mid-write leaves the last good one.
"""
import glob
import os
import re
import shutil
import time

from mpdit.io.checkpoint_file import CheckpointError, save_checkpoint
from mpdit.io.run_lock import process_alive

_NAME = re.compile(r"ckpt-(\d+)\.pt$")


def checkpoint_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, f"ckpt-{step:08d}.pt")


def save(state: dict, run_dir: str, step: int) -> str:
    """Write the checkpoint of `step` atomically; a failed write (a full disk, an I/O error)
    leaves no partial file and raises CheckpointError naming the intact previous checkpoint."""
    return save_checkpoint(state, checkpoint_path(run_dir, step), previous=latest(run_dir))


def remove_stale_partials(run_dir: str) -> list:
    """Remove the partial checkpoints (`*.tmp-<pid>`) of writers that are no longer running (a
    SIGKILL or a crash mid-save); called by the run that holds the folder's lock. Returns them."""
    removed = []
    for tmp in glob.glob(os.path.join(run_dir, "ckpt-*.pt.tmp-*")):
        pid = tmp.rsplit("-", 1)[-1]
        if not pid.isdigit() or not process_alive(int(pid)):
            os.remove(tmp)
            removed.append(tmp)
    return removed


# What a run leaves in its folder (partial checkpoints and the lock are not records: they are cleaned up)
RUN_RECORDS = ("ckpt-*.pt", "metrics.jsonl", "samples", "eval", "tensorboard", "rolled-back-*")


def run_records(run_dir: str) -> list:
    """The names of the records of a run that `run_dir` holds (checkpoints, metrics.jsonl, sample
    grids, evaluations, TensorBoard events, rolled-back steps), sorted."""
    found = (path for pattern in RUN_RECORDS for path in glob.glob(os.path.join(run_dir, pattern)))
    return sorted(os.path.basename(path) for path in found)


def _checkpoints(run_dir: str) -> list:
    """[(step, path)] of the complete checkpoints in run_dir, oldest first."""
    return sorted((int(m.group(1)), p) for p in glob.glob(os.path.join(run_dir, "ckpt-*.pt"))
                  if (m := _NAME.search(os.path.basename(p))))


def paths(run_dir: str) -> list:
    """The complete checkpoints in run_dir, oldest first."""
    return [path for _, path in _checkpoints(run_dir)]


def latest(run_dir: str):
    """Path of the highest-step complete checkpoint in run_dir, or None."""
    found = _checkpoints(run_dir)
    return found[-1][1] if found else None


def set_aside_newer(run_dir: str, step: int) -> tuple:
    """A run rolled back to `step`: moves the checkpoints of later steps, and a copy of
    metrics.jsonl (their history), into run_dir/rolled-back-<time>/, out of reach of pruning and
    of --resume auto. Returns (that folder, the steps moved), or (None, []) when none is newer."""
    newer = [(s, path) for s, path in _checkpoints(run_dir) if s > step]
    if not newer:
        return None, []
    aside = os.path.join(run_dir, f"rolled-back-{time.strftime('%Y%m%d-%H%M%S')}-from-{newer[-1][0]}")
    os.makedirs(aside, exist_ok=True)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(metrics):
        shutil.copy2(metrics, os.path.join(aside, "metrics.jsonl"))
    for _, path in newer:
        os.replace(path, os.path.join(aside, os.path.basename(path)))
    return aside, [s for s, _ in newer]


def prune(run_dir: str, keep: int) -> list:
    """Remove all but the newest `keep` checkpoints (each a full one: any of them can be resumed
    from); returns the paths removed. Called after a new checkpoint is safely in place."""
    old = _checkpoints(run_dir)[:-keep] if keep > 0 else []
    for _, path in old:
        os.remove(path)
    return [path for _, path in old]


def check_same_model(state: dict, path: str, model_config: dict) -> None:
    if state["model_config"] != model_config:
        diff = sorted(k for k in model_config if state["model_config"].get(k) != model_config.get(k))
        raise CheckpointError(f"checkpoint={path!r}: it is for another model ({state['train_config']['model']}; "
                              f"differs in {', '.join(diff)}); resume with the same --model and overrides")


# Settings that fix the data order and what a step is: a resumed run must keep them.
FIXED_ON_RESUME = ("model", "dataset", "global_batch_size", "seed", "image_size")
# Settings a resumed run may change (said in one warning line); the others (steps, logging,
# checkpoint cadence, workers, compile, kernel backend, the micro-batch: like the number of
# processes, only the order of the sums) change nothing a checkpoint records.
WARNED_ON_RESUME = ("lr", "weight_decay", "warmup_steps", "grad_clip", "ema_decay", "ema_warmup", "time_sampler",
                    "time_mean", "time_std", "class_dropout", "precision", "on_nonfinite", "parallel")


def check_same_run(state: dict, path: str, config: dict) -> list:
    """CheckpointError if `config` (the new run's TrainConfig as a dict) changes a setting the
    checkpoint's run must keep; else the changed other settings, as 'name: old -> new'."""
    saved = state["train_config"]
    for name in FIXED_ON_RESUME:
        if name in saved and saved[name] != config[name]:
            raise CheckpointError(f"checkpoint={path!r}: {name} was {saved[name]!r}, now {config[name]!r}; a resumed "
                                  f"run keeps its {name} (the data order depends on it)")
    return [f"{name}: {saved[name]!r} -> {config[name]!r}" for name in WARNED_ON_RESUME
            if name in saved and saved[name] != config[name]]
