"""`mpdit flops`: parameters and GFLOPs, against the paper's tables."""
import json
from dataclasses import dataclass

from mpdit.cli.parsing import add_command, overrides_from_args
from mpdit.options import config_from_args, option


@dataclass(frozen=True)
class FlopsSettings:
    device: str = option("meta", "meta: count shapes without weights; cpu: a forward on real tensors",
                         choices=("meta", "cpu"))
    json: bool = option(False, "print JSON instead of a table")


def add(commands) -> None:
    add_command(commands, "flops", run, FlopsSettings, help="parameters and GFLOPs, against the paper's tables",
                model=False)


def run(args) -> int:
    from mpdit.audit.flops import audit, row_dict
    from mpdit.audit.report import LEGEND, PAPER_NOTE, format_table, paper_report

    settings, overrides = config_from_args(FlopsSettings, args), overrides_from_args(args)
    if args.model is None and overrides:
        raise ValueError(f"--{next(iter(overrides)).replace('_', '-')} needs --model NAME")
    rows = [row_dict(audit(args.model, device=settings.device, **overrides))] if args.model \
        else paper_report(device=settings.device)
    if settings.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows) + "\n\n" + LEGEND + ("\n" + PAPER_NOTE if args.model is None else ""))
    return 0
