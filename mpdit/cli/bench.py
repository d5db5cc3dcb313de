"""`mpdit bench`: speed, memory and FLOPs of MPDiT against DiT/SiT, per kernel backend."""
import sys

from mpdit.cli.parsing import add_command
from mpdit.options import config_from_args


def add(commands) -> None:
    from mpdit.bench.plan import BenchRequest, RunOptions
    from mpdit.bench.presets import PRESETS

    add_command(commands, "bench", run, BenchRequest, RunOptions,
                help="speed, memory and FLOPs of MPDiT against DiT/SiT, per kernel backend",
                description="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))


def run(args) -> int:
    from mpdit.bench.plan import BenchRequest, RunOptions
    from mpdit.bench.runner import BenchInterrupted
    from mpdit.bench.runner import run as run_plan

    plan = config_from_args(BenchRequest, args).plan()
    try:
        outcome = run_plan(plan, config_from_args(RunOptions, args))
    except BenchInterrupted as stop:  # the files are written; 128 + signal, as a shell reports it
        print(f"mpdit bench: {stop}", file=sys.stderr)
        return 128 + stop.signum
    print(outcome["markdown"])
    print(f"\nwrote {outcome['json']}, {outcome['csv']}, {outcome['markdown_path']}"
          + "".join(f", {p}" for p in outcome["plots"]))
    return 1 if outcome["results"].errors else 0
