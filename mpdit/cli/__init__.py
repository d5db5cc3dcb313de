"""The `mpdit` command line: one module per subcommand, each with add(commands), which declares
its options (generated from the command's settings dataclass, mpdit.options), and run(args).
Errors print one line on stderr and exit 2, never a traceback (MPDIT_DEBUG=1 shows it).

Process-wide settings are chosen here, once, at the entry: TF32 matrix products on GPU
(the library functions leave such settings as they find them).
"""
import os
import sys

import torch

from mpdit.cli import ablation, bench, convert, evaluate, export_ema, extract_latents, flops, sample, train
from mpdit.cli.parsing import DefaultsHelp, Parser, fail, input_path, parse_stages
from mpdit.options import config_from_args

COMMANDS = (flops, bench, train, ablation, sample, evaluate, export_ema, extract_latents, convert)
__all__ = ["build_parser", "config_from_args", "input_path", "main", "parse_stages"]


def build_parser() -> Parser:
    parser = Parser(prog="mpdit", description="MPDiT engine: flops (FLOP audit against the paper), bench (speed, "
                                             "memory, profiles), train (flow matching, one GPU to many), ablation "
                                             "(the paper's ablation tables, trained), sample, eval (sample quality), "
                                             "export-ema, extract-latents, convert (official DiT/SiT/MPDiT "
                                             "checkpoints).")
    # every subcommand's help shows its defaults
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=lambda **kw: Parser(formatter_class=DefaultsHelp, **kw))
    for command in COMMANDS:
        command.add(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True  # TF32 GEMMs and convolutions on GPU, as DiT's and SiT's train.py
    torch.backends.cudnn.allow_tf32 = True
    try:
        return args.handler(args)
    except (ValueError, OSError) as error:  # bad input, or a file system that said no: one line
        if os.environ.get("MPDIT_DEBUG") == "1":  # the traceback, for a bug report
            raise
        return fail(f"mpdit {args.command}", str(error) or type(error).__name__)
    except KeyboardInterrupt:  # train handles its own signals; elsewhere nothing is half-written
        if os.environ.get("MPDIT_DEBUG") == "1":
            raise
        print(f"mpdit {args.command}: interrupted", file=sys.stderr)
        return 130
