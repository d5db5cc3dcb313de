"""What every subcommand shares: one-line errors, help that shows defaults, the model options
(generated from ModelConfig), and the input file given the same way everywhere."""
import argparse
import dataclasses
import json
import sys
import typing

from mpdit.models import ModelConfig, list_models


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message):
        raise SystemExit(fail(self.prog, message))


class DefaultsHelp(argparse.HelpFormatter):
    """Help that shows each option's default where it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))  # default: not given
        if action.option_strings and action.default not in (None, argparse.SUPPRESS) and not flag \
                and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def add_command(commands, name: str, run, *settings, help: str, description: str = None, model: bool = None,
                input_help: str = None) -> argparse.ArgumentParser:
    """A subcommand whose options are generated from its settings dataclasses (mpdit.options);
    model: the model options (required or not); input_help: it reads CHECKPOINT."""
    from mpdit.options import add_config_arguments

    parser = commands.add_parser(name, help=help, description=description)
    if model is not None:
        add_model_arguments(parser, required=model)
    if input_help:
        add_input(parser, input_help)
    for config_class in settings:
        add_config_arguments(parser, config_class)
    parser.set_defaults(handler=run)
    return parser


def fail(prog: str, message: str) -> int:
    # One write of the whole line: under torchrun every worker may say it into the same pipe, where
    # print's two writes (text, then newline) interleave ("...3 processesmpdit train: error: ...").
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    return 2


def note(prog: str):
    """A printer of one-line notes on stderr."""
    return lambda text: print(f"{prog}: note: {text}", file=sys.stderr)


def write_json(path: str, result: dict) -> None:
    from mpdit.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


def parse_stages(text: str):
    """'8:14,4:8,2:6' -> ((8, 14), (4, 8), (2, 6))."""
    try:
        return tuple(tuple(int(part) for part in stage.split(":")) for stage in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected patch:depth pairs such as 4:6,2:6") from None


def _model_options() -> list:
    """The ModelConfig fields marked overridable with a help text: the model options."""
    return [spec for spec in dataclasses.fields(ModelConfig) if spec.metadata.get("override")
            and spec.metadata.get("help")]


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--model, --fine-depth and one option per overridable ModelConfig field that has a help text
    (mpdit.models.transformer.overridable): shared by every command that builds a model."""
    parser.add_argument("--model", metavar="NAME", required=required, help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--fine-depth", type=int, metavar="K", help="blocks in the finest stage (k), total depth kept")
    hints = typing.get_type_hints(ModelConfig)
    for spec in _model_options():
        meta = {key: value for key, value in spec.metadata.items() if key != "override"}
        kind = hints[spec.name]
        kwargs = {"action": argparse.BooleanOptionalAction} if kind is bool else \
            {"type": parse_stages if spec.name == "stages" else kind}
        # default None: a value only when given, so the registered size's own value stands otherwise
        action = parser.add_argument("--" + spec.name.replace("_", "-"), dest=spec.name, default=None, **kwargs,
                                     **meta)
        action.declared_by = (ModelConfig.__name__, spec.name)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The create_model overrides given on the command line."""
    names = ["fine_depth"] + [spec.name for spec in _model_options()]
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def add_input(parser: argparse.ArgumentParser, help: str) -> None:
    """The file a command reads, given the same way in every command: CHECKPOINT (positional);
    --checkpoint is the older spelling, still accepted."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", help=help)
    parser.add_argument("--checkpoint", dest="checkpoint_option", metavar="CHECKPOINT",
                        help="the same as CHECKPOINT (the older spelling)")


def input_path(args: argparse.Namespace) -> str:
    """CHECKPOINT or --checkpoint, exactly one of them."""
    given = [path for path in (args.checkpoint, args.checkpoint_option) if path is not None]
    if len(given) != 1:
        raise ValueError("CHECKPOINT: expected one input file" + (", given twice (positional and --checkpoint)"
                                                                  if given else ""))
    return given[0]
