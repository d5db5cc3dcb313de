"""`mpdit export-ema`: a checkpoint's EMA weights as safetensors."""
import json
from dataclasses import dataclass

from mpdit.cli.parsing import add_command, input_path
from mpdit.options import config_from_args, required


@dataclass(frozen=True)
class ExportSettings:
    out: str = required("the EMA weights, with the model config in the metadata (mpdit.load reads it)",
                        metavar="FILE.safetensors")


def add(commands) -> None:
    add_command(commands, "export-ema", run, ExportSettings, help="a checkpoint's EMA weights as safetensors",
                input_help="a training checkpoint (.pt)")


def run(args) -> int:
    from mpdit.io import check_output, export_ema, load_checkpoint

    source, out = input_path(args), config_from_args(ExportSettings, args).out
    check_output(out, ".safetensors", inputs=[source])  # before reading a multi-GB checkpoint
    state = load_checkpoint(source)
    written = export_ema(state, out, source=f"checkpoint={source!r}")
    print(json.dumps({"out": written, "model": state["train_config"]["model"], "step": state["step"],
                      "tensors": len(state["ema"])}))
    return 0
