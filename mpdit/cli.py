"""The `mpdit` command line. Errors print one line on stderr and exit 2, never a traceback."""
import argparse
import json
import sys

from mpdit.models import list_models


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message):
        raise SystemExit(_fail(self.prog, message))


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _parse_stages(text: str):
    """'8:14,4:8,2:6' -> ((8, 14), (4, 8), (2, 6))."""
    try:
        return tuple(tuple(int(part) for part in stage.split(":")) for stage in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected patch:depth pairs such as 4:6,2:6") from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model and the create_model overrides, shared by every command that builds a model."""
    parser.add_argument("--model", metavar="NAME", help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--fine-depth", type=int, metavar="K", help="blocks in the finest stage (k)")
    parser.add_argument("--class-tokens", type=int, metavar="M", help="class tokens m (0 = DiT's single vector)")
    parser.add_argument("--time-embed", choices=("mlp", "fno"))
    parser.add_argument("--shared-adaln", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--no-skip", dest="skip", action="store_false", default=None,
                        help="no patch embedding of the input at the finer stages")
    parser.add_argument("--latent-size", type=int, metavar="S", help="latent height = width (32 at 256 px)")
    parser.add_argument("--stages", type=_parse_stages, metavar="P:D,...", help="stage schedule, coarse to fine")


def model_overrides(args: argparse.Namespace) -> dict:
    names = ("fine_depth", "class_tokens", "time_embed", "shared_adaln", "skip", "latent_size", "stages")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def run_flops(args: argparse.Namespace) -> int:
    from mpdit.flops import audit, row_dict
    from mpdit.flops_report import LEGEND, PAPER_NOTE, format_table, paper_report

    overrides = model_overrides(args)
    if args.model is None and overrides:
        raise ValueError(f"--{next(iter(overrides)).replace('_', '-')} needs --model NAME")
    rows = [row_dict(audit(args.model, device=args.device, **overrides))] if args.model \
        else paper_report(device=args.device)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
        print()
        print(LEGEND)
        if args.model is None:
            print(PAPER_NOTE)
    return 0


def _csv_list(text: str) -> list:
    return [item for item in text.split(",") if item]


def run_bench(args: argparse.Namespace) -> int:
    from mpdit.bench.runner import run

    outcome = run(args.preset, device=args.device, out=args.out, models=args.models, providers=args.providers,
                  sections=args.sections, progress=not args.no_progress)
    print(outcome["markdown"])
    print(f"\nwrote {outcome['json']}, {outcome['csv']}" + "".join(f", {p}" for p in outcome["plots"]))
    return 1 if outcome["results"].errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpdit", description="MPDiT engine: models, FLOP audit, sampling.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    flops = commands.add_parser("flops", help="parameters and GFLOPs, against the paper's tables")
    add_model_arguments(flops)
    flops.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flops.add_argument("--device", default="meta", choices=("meta", "cpu"),
                       help="meta: count shapes without weights (default); cpu: a forward on real tensors")
    flops.set_defaults(handler=run_flops)

    from mpdit.bench.presets import PRESETS, SECTIONS

    bench = commands.add_parser("bench", help="speed, memory and FLOPs of MPDiT against DiT/SiT, per kernel backend",
                                description="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
    bench.add_argument("--preset", default="default", choices=list(PRESETS))
    bench.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    bench.add_argument("--out", metavar="DIR", help="results folder (default benchmarks/results/<date>-<device>-<preset>)")
    bench.add_argument("--models", type=_csv_list, metavar="A,B", help="a subset of the preset's models")
    bench.add_argument("--providers", type=_csv_list, metavar="A,B", help="torch, compile, triton, triton+compile")
    bench.add_argument("--sections", type=_csv_list, metavar="A,B", help=", ".join(SECTIONS))
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=run_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except ValueError as error:
        return _fail(f"mpdit {args.command}", str(error))
