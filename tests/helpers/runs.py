"""The one tiny training run the tests use: a two-block MPDiT-S on scikit-learn's digits at 16 px,
global batch 8, a record every step, no sample grids, no loader workers; seconds on a CPU. As a
TrainConfig (`digits_config`) and as the command line's argv (`TRAIN_ARGS`), the same run."""
import shutil
import time

from mpdit.options import config_from_values
from mpdit.training.config import TrainConfig

TINY_STAGES = ((4, 1), (2, 1))
TINY = dict(model="MPDiT-S", dataset="digits", global_batch_size=8, checkpoint_every=1, log_every=1, sample_every=0,
            num_workers=0)
TRAIN_ARGS = ["train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", "digits", "--global-batch-size", "8",
              "--checkpoint-every", "1", "--log-every", "1", "--sample-every", "0", "--num-workers", "0"]


def digits_config(run_dir, steps: int, **settings) -> TrainConfig:
    """The tiny run into `run_dir` for `steps` steps; `settings` change any setting, named as the
    command line names it (eval_every for --eval-every: TrainConfig.evaluation.every)."""
    values = {**TINY, "steps": steps, "run_dir": str(run_dir), **settings}
    given = {name: values.pop(name) for name in ("model", "overrides") if name in values}
    return config_from_values(TrainConfig, values, **{"overrides": {"stages": TINY_STAGES}, **given})


def copy_run(source, destination) -> str:
    """A copy of a shared run folder, for a test that changes it (resume, rollback, locks)."""
    shutil.copytree(source, destination)
    return str(destination)


def wait_until(condition, timeout: float, what: str, process=None, poll: float = 0.1) -> None:
    """Returns once `condition()` holds; fails the test after `timeout` seconds, or as soon as
    `process` (a Popen) has ended without it holding."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(poll)
