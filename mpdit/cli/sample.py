"""`mpdit sample`: images from a checkpoint or an export into an .npz (ADM layout) and a PNG grid."""
import json

from mpdit.cli.parsing import add_command, input_path
from mpdit.options import config_from_args


def add(commands) -> None:
    from mpdit.inference.settings import SampleSettings

    add_command(commands, "sample", run, SampleSettings,
                help="images from a training checkpoint or an EMA export: .npz (ADM layout) + PNG grid",
                input_help="a training checkpoint (.pt), an `mpdit export-ema` file or a converted official "
                           "checkpoint (.safetensors)")


def run(args) -> int:
    from mpdit.inference.sample_checkpoint import sample_checkpoint
    from mpdit.inference.settings import SampleSettings

    print(json.dumps(sample_checkpoint(input_path(args), config_from_args(SampleSettings, args))))
    return 0
