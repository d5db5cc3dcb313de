"""`mpdit train`: flow-matching training (one process or torchrun), resumable."""
import json
import os
import sys

from mpdit.cli.parsing import add_command, overrides_from_args
from mpdit.options import config_from_args


def add(commands) -> None:
    from mpdit.training.config import TrainConfig

    add_command(commands, "train", run, TrainConfig, model=True,
                help="flow-matching training (one process or torchrun), resumable")


def run(args) -> int:
    from mpdit.io import CheckpointError
    from mpdit.training.config import TrainConfig
    from mpdit.training.step import TrainingError
    from mpdit.training.trainer import TrainingStopped, train

    config = config_from_args(TrainConfig, args, model=args.model, overrides=overrides_from_args(args))
    try:
        final = train(config)
    except TrainingStopped as stop:  # the checkpoint is written; 128 + signal, as a shell reports it
        print(f"mpdit train: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except (TrainingError, CheckpointError) as error:
        raise ValueError(str(error)) from None
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: once, not once per process
        print(json.dumps(final))
    return 0
