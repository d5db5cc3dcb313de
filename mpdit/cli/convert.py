"""`mpdit convert`: official DiT / SiT / reference-MPDiT checkpoints to the engine's .safetensors
(--from) and back (--to)."""
import json
from dataclasses import dataclass
from typing import Optional

from mpdit.cli.parsing import add_command, input_path
from mpdit.compat.layouts import FAMILIES
from mpdit.options import config_from_args, option, required


@dataclass(frozen=True)
class ConvertSettings:
    out: str = required("--from: FILE.safetensors; --to: FILE.pt", metavar="FILE")
    source: Optional[str] = option(None, "the official code the input comes from: write the engine's .safetensors",
                                   choices=FAMILIES, flag="--from")
    target: Optional[str] = option(None, "the official code to write for: an engine file to its .pt state dict",
                                   choices=FAMILIES, flag="--to")
    model: Optional[str] = option(None, "the official name: DiT-XL/2, SiT-XL/2, MPDiT-XL/4x, MPDiTv2-XL, ...; "
                                        "required with --from (--to: default, the one --from recorded)",
                                  metavar="NAME")
    weights: str = option("ema", "--from a training checkpoint: which weights", choices=("ema", "model"))

    def check(self) -> None:
        if (self.source is None) == (self.target is None):
            raise ValueError("--from / --to: expected one of them (--from FAMILY: official to engine; --to FAMILY: "
                             "engine to official)")
        if self.source and self.model is None:
            raise ValueError("--model: --from needs the official model name (e.g. DiT-XL/2, MPDiT-XL/4x)")


def add(commands) -> None:
    add_command(commands, "convert", run, ConvertSettings,
                help="official DiT / SiT / reference-MPDiT checkpoints to the engine's .safetensors (--from) and back "
                     "(--to)",
                input_help="--from: an official .pt (bare, or train.py's model/ema); --to: an engine .safetensors or "
                           "training checkpoint")


def run(args) -> int:
    from mpdit.compat.convert import convert_to_native, convert_to_official

    settings = config_from_args(ConvertSettings, args)
    settings.check()
    if settings.source:
        result = convert_to_native(input_path(args), settings.source, settings.model, settings.out,
                                   weights=settings.weights)
    else:
        result = convert_to_official(input_path(args), settings.target, settings.out, name=settings.model)
    print(json.dumps(result))
    return 0
