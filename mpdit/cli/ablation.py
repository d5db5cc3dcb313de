"""`mpdit ablation`: the paper's ablation tables trained, sampled and evaluated, beside its figures."""
import json
import os
import sys

from mpdit.cli.parsing import add_command
from mpdit.options import add_config_arguments, config_from_args, option_values


def add(commands) -> None:
    from mpdit.ablation import AblationConfig
    from mpdit.ablation.config import PER_ROW
    from mpdit.training.config import TrainConfig

    parser = add_command(
        commands, "ablation", run, AblationConfig,
        help="the paper's ablation tables (1: components, 4: fine depth k) trained, sampled and evaluated, beside the "
             "paper's figures",
        description="Each row of the table is trained with the training options below (the same for every row: "
                    "--steps, --global-batch-size, --lr, ... as in mpdit train), evaluated every --eval-every steps "
                    "(0: once, at the end) against --eval-ref, once per seed. Results stream into --out; a killed "
                    "command continues there. The table and JSON go to stdout.")
    add_config_arguments(parser, TrainConfig, exclude=PER_ROW, optional=True)


def run(args) -> int:
    from mpdit.ablation import AblationConfig, format_rows, format_table, run_ablation
    from mpdit.ablation.config import PER_ROW
    from mpdit.ablation.runner import RESULTS
    from mpdit.io import CheckpointError, jsonl
    from mpdit.training.config import TrainConfig
    from mpdit.training.step import TrainingError
    from mpdit.training.trainer import TrainingStopped

    config = config_from_args(AblationConfig, args, training=option_values(TrainConfig, args, exclude=PER_ROW))
    try:
        rows = run_ablation(config)
    except TrainingStopped as stop:  # the row's checkpoint is written; the same command continues
        print(f"mpdit ablation: {stop}; run the same command again to continue", file=sys.stderr)
        return 128 + stop.signum
    except (TrainingError, CheckpointError) as error:
        raise ValueError(str(error)) from None
    if int(os.environ.get("RANK", "0")):  # under torchrun: rank 0 prints
        return 0
    if config.json:
        print(json.dumps(rows))
    elif config.dry_run:
        print(format_rows(rows))
    else:
        print(format_table(rows, jsonl.read(os.path.join(config.out, RESULTS))))
    return 0
