"""Settings declared once: each command's settings are a dataclass whose fields carry their type,
default, choices and help, and its command-line options are generated from the fields.

`option()` / `required()` declare a field; `add_config_arguments` makes one --option per field,
each tagged with the field it comes from (`action.declared_by`, which the tests check);
`config_from_args` builds the dataclass back from the parsed options.
"""
import argparse
import dataclasses
import typing
from dataclasses import field


def option(default=None, help=None, **cli):
    """A field with its command-line help (and choices, metavar, type, flag) as metadata. `flag`:
    the option's spelling where it is not the field's name (an older spelling kept)."""
    return field(default=default, metadata={"help": help, **cli})


def required(help=None, **cli):
    return field(metadata={"help": help, **cli})


def csv_list(text: str) -> tuple:
    """'a, b' -> ('a', 'b')."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def int_list(text: str) -> tuple:
    """'0,1,2' -> (0, 1, 2); at least one integer."""
    try:
        values = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers such as 0,1,2")
    return values


def check_choices(config) -> None:
    """ValueError naming the first field whose value is not among its declared choices."""
    for spec in dataclasses.fields(config):
        choices, value = spec.metadata.get("choices"), getattr(config, spec.name)
        if choices and value is not None and value not in choices:
            raise ValueError(f"{spec.name}={value!r}: expected one of {', '.join(map(str, choices))}")


def group(config_class, prefix: str, help: str):
    """A field holding a nested settings dataclass whose options are --<prefix>-<field>, so that a
    set of settings (the evaluation during training) is one value with the flat options users know."""
    return field(default_factory=config_class, metadata={"group": prefix, "help": help})


def _dest(spec, prefix: str) -> str:
    return f"{prefix}_{spec.name}" if prefix else spec.name


def add_config_arguments(parser, config_class, exclude=(), optional: bool = False, prefix: str = "") -> None:
    """One --option per field of a config dataclass, with the field's type, default, choices and
    help, so that each default lives in the dataclass. Fields marked cli=False, and `exclude`, are
    left out; `optional`: the fields without a default are not required here (the caller checks).
    A bool field is a --name / --no-name pair; a group() field, its class's options, prefixed."""
    hints = typing.get_type_hints(config_class)
    for spec in dataclasses.fields(config_class):
        meta = dict(spec.metadata)
        if not meta.pop("cli", True) or spec.name in exclude:
            continue
        if "group" in meta:
            add_config_arguments(parser, hints[spec.name], optional=optional, prefix=meta["group"])
            continue
        dest = _dest(spec, prefix)
        flag = meta.pop("flag", "--" + dest.replace("_", "-"))
        kind = hints[spec.name]
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        positional = not flag.startswith("-")  # its flag is its metavar-like name; argparse takes no dest then
        kwargs = {**({} if positional else {"dest": dest}), **meta}
        if spec.default is dataclasses.MISSING:
            kwargs.update({} if positional else {"required": not optional})
        else:
            kwargs["default"] = spec.default
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.setdefault("type", kind)  # a field's own parser (a comma-separated list) where it names one
        action = parser.add_argument(flag, **kwargs)
        action.declared_by = (config_class.__name__, spec.name)


def option_values(config_class, args: argparse.Namespace, exclude=()) -> dict:
    """{option's dest: value} of a config dataclass's options, groups flattened (--eval-every:
    eval_every): the settings as the command line spells them."""
    values = {}
    for spec in dataclasses.fields(config_class):
        if spec.name in exclude or not spec.metadata.get("cli", True):
            continue
        if "group" in spec.metadata:
            nested = typing.get_type_hints(config_class)[spec.name]
            values.update({_dest(inner, spec.metadata["group"]): getattr(args, _dest(inner, spec.metadata["group"]))
                           for inner in dataclasses.fields(nested)})
        else:
            value = getattr(args, spec.name)
            values[spec.name] = tuple(value) if isinstance(value, list) else value  # nargs: a tuple field
    return values


def config_from_values(config_class, values: dict, **given):
    """The config dataclass from option_values' flat dict (groups nested back); `given` supplies
    fields directly (those with cli=False)."""
    fields = {}
    for spec in dataclasses.fields(config_class):
        if spec.name in given:
            continue
        if "group" in spec.metadata:
            nested, prefix = typing.get_type_hints(config_class)[spec.name], spec.metadata["group"]
            fields[spec.name] = nested(**{inner.name: values[_dest(inner, prefix)]
                                          for inner in dataclasses.fields(nested) if _dest(inner, prefix) in values})
        elif spec.name in values:
            fields[spec.name] = values[spec.name]
    return config_class(**fields, **given)


def config_from_args(config_class, args: argparse.Namespace, **given):
    """The config dataclass from the parsed options; `given` supplies the fields with cli=False."""
    return config_from_values(config_class, option_values(config_class, args, exclude=given), **given)
