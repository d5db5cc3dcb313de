"""One command-line style: the input file given the same way in every command, every result
printed as JSON, outputs checked before any work (suffix, not the command's own input), a
mistake in any command one line."""
import json

import pytest

from helpers.cli import run_cli
from mpdit.cli import build_parser, input_path


@pytest.mark.parametrize("command", [["sample", "--out", "s.npz"], ["export-ema", "--out", "e.safetensors"],
                                     ["convert", "--to", "dit", "--out", "o.pt"]])
def test_the_input_is_positional_in_every_command_and_once(command):
    parser = build_parser()
    assert input_path(parser.parse_args([*command, "in.pt"])) == "in.pt"
    assert input_path(parser.parse_args([*command, "--checkpoint", "in.pt"])) == "in.pt"  # the older spelling
    with pytest.raises(ValueError, match="CHECKPOINT: expected one input file, given twice"):
        input_path(parser.parse_args([*command, "in.pt", "--checkpoint", "other.pt"]))
    with pytest.raises(ValueError, match="CHECKPOINT: expected one input file$"):
        input_path(parser.parse_args(command))


def test_an_output_that_is_the_input_is_refused_before_any_work(tmp_path):
    official = tmp_path / "dit.safetensors"
    official.write_bytes(b"the user's only copy")
    result = run_cli("convert", "--from", "dit", "--model", "DiT-S/8", official, "--out", official)
    assert "the file this command reads" in result.error
    assert official.read_bytes() == b"the user's only copy"


def test_export_ema_prints_its_result_as_json(digits_run, tmp_path):
    out = tmp_path / "ema.safetensors"
    printed = json.loads(run_cli("export-ema", digits_run.checkpoint, "--out", out).ok().out)
    assert printed == {"out": str(out), "model": "MPDiT-S", "step": 2, "tensors": printed["tensors"]}
    assert printed["tensors"] > 0 and out.stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "4",
      "--run-dir", "{file}"], "run_dir='{file}': cannot be a folder here"),
    (["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "4",
      "--run-dir", "{file}/run"], "run_dir='{file}/run': cannot be a folder here"),
    (["export-ema", "--checkpoint", "{file}", "--out", "{file}/ema.safetensors"],
     "out='{file}/ema.safetensors': a file stands where the folder {file} should be"),
    (["sample", "--checkpoint", "{file}", "--out", "s.npz", "--classes", ""],
     "argument --classes: '': expected comma-separated integers"),
])
def test_cli_mistakes_are_one_line(tmp_path, argv, message):
    file = tmp_path / "a-file"
    file.write_text("")
    result = run_cli(*(arg.format(file=file) for arg in argv))
    assert message.format(file=file) in result.error


def test_every_option_of_every_command_says_what_it_is():
    import argparse

    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    silent = [f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
              for name, parser in commands.choices.items() for action in parser._actions
              if not action.help and action.dest != "help"]
    assert silent == []
