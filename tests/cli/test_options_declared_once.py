"""Every command-line option is declared once: each option of every subcommand comes from one field
of a settings dataclass (its type, default, choices and help live there), or is one of the few
exceptions documented here."""
import argparse
import dataclasses

import pytest

from mpdit.ablation import AblationConfig
from mpdit.bench.plan import BenchRequest, RunOptions
from mpdit.cli import build_parser
from mpdit.cli.convert import ConvertSettings
from mpdit.cli.export_ema import ExportSettings
from mpdit.cli.flops import FlopsSettings
from mpdit.data.latents import ExtractSettings
from mpdit.evaluation.settings import EvalSettings
from mpdit.inference.settings import SampleSettings
from mpdit.models import ModelConfig
from mpdit.options import config_from_args
from mpdit.training.config import TrainConfig, TrainingEvaluation

# The options that are no settings field, and why.
EXCEPTIONS = {
    "--model": "the registered model name, shared by every command that builds a model (TrainConfig.model is "
               "filled from it)",
    "--fine-depth": "an argument of create_model (blocks in the finest stage, total depth kept), no ModelConfig "
                    "field",
    "checkpoint": "CHECKPOINT, the file a command reads, positional in every command (mpdit.cli.parsing.add_input)",
    "--checkpoint": "CHECKPOINT's older spelling",
}


def subcommands() -> dict:
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices


def options(parser) -> list:
    """(spelling, action) of each option a subcommand takes."""
    return [(action.option_strings[0] if action.option_strings else action.dest, action)
            for action in parser._actions if action.dest != "help"]


def field_of(action):
    """The dataclass field an option was generated from, or None."""
    return getattr(action, "declared_by", None)


def test_every_option_comes_from_one_settings_field_or_a_documented_exception():
    undeclared, fields_used = [], {}
    for name, parser in subcommands().items():
        for spelling, action in options(parser):
            declared = field_of(action)
            if declared is None and spelling not in EXCEPTIONS:
                undeclared.append(f"mpdit {name} {spelling}")
            if declared is not None:
                fields_used.setdefault((name, declared), []).append(spelling)
    assert undeclared == []
    assert {key: spellings for key, spellings in fields_used.items() if len(spellings) > 1} == {}  # one option each


def test_each_generated_option_has_its_fields_default_and_choices():
    classes = {cls.__name__: cls for cls in (AblationConfig, BenchRequest, RunOptions, ConvertSettings, ExportSettings,
                                             FlopsSettings, ExtractSettings, EvalSettings, SampleSettings,
                                             ModelConfig, TrainConfig, TrainingEvaluation)}
    checked = 0
    for name, parser in subcommands().items():
        for spelling, action in options(parser):
            if field_of(action) is None or field_of(action)[0] == "ModelConfig":  # a size's own value stands
                continue
            cls_name, field_name = field_of(action)
            spec = next(spec for spec in dataclasses.fields(classes[cls_name]) if spec.name == field_name)
            default = None if spec.default is dataclasses.MISSING else spec.default
            assert action.default == default, f"mpdit {name} {spelling}"
            assert tuple(action.choices or ()) == tuple(spec.metadata.get("choices") or ()), f"mpdit {name} {spelling}"
            assert action.help.startswith(spec.metadata["help"].replace("%%", "%")[:20]) or \
                action.help == spec.metadata["help"], f"mpdit {name} {spelling}"
            checked += 1
    assert checked > 100  # every command's settings, train's and ablation's included


@pytest.mark.parametrize("argv, expected", [
    (["sample", "c.pt", "--out", "s.npz"], SampleSettings(out="s.npz")),
    (["eval", "r.npz", "s.npz"], EvalSettings(files=("r.npz", "s.npz"))),
    (["extract-latents", "--images", "i", "--out", "o"], ExtractSettings(images="i", out="o")),
    (["convert", "c.pt", "--to", "dit", "--out", "o.pt"], ConvertSettings(out="o.pt", target="dit")),
    (["bench"], BenchRequest()),
    (["bench"], RunOptions()),
    (["flops"], FlopsSettings()),
])
def test_a_command_with_only_its_required_options_is_its_settings_with_their_defaults(argv, expected):
    assert config_from_args(type(expected), build_parser().parse_args(argv)) == expected


def test_older_spellings_still_parse():
    parser = build_parser()
    args = parser.parse_args(["sample", "c.pt", "--out", "s.npz", "--no-ema", "--no-progress", "--eval", "r.npz"])
    assert (args.ema, args.progress, args.eval_ref) == (False, False, "r.npz")
    args = parser.parse_args(["bench", "--no-progress", "--no-plots", "--isolate", "--models", "MPDiT-B,SiT-B/2"])
    assert (args.progress, args.plots, args.isolate, args.models) == (False, False, True, ("MPDiT-B", "SiT-B/2"))
    assert parser.parse_args(["eval", "--no-cache", "r.npz", "s.npz"]).cache is False
    args = parser.parse_args(["convert", "c.pt", "--from", "sit", "--model", "SiT-XL/2", "--out", "o.safetensors"])
    assert (args.source, args.model) == ("sit", "SiT-XL/2")


@pytest.mark.parametrize("check, expected", [
    (lambda: ExtractSettings("i", "o", normalisation="minmax").check(), "normalisation='minmax': expected one of "
                                                                         "scale, channel"),
    (lambda: EvalSettings(files=("r.npz", "s.npz"), features="clip").mode(), "features='clip': expected one of "
                                                                              "inception, digits, dinov2"),
    (lambda: SampleSettings("s.npz", method="ddim").check(), "method='ddim': expected one of euler"),
    (lambda: BenchRequest(device="tpu").plan(), "device='tpu': expected one of cpu, cuda"),
])
def test_a_value_outside_its_choices_is_refused_from_python_too(check, expected):
    """The command line refuses it in argparse; a caller building the settings in Python gets the
    same one line, naming the setting (mpdit.options.check_choices)."""
    with pytest.raises(ValueError, match=expected):
        check()
