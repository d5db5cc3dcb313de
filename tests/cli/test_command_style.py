"""One command-line style: the input file given the same way in every command, every result
printed as JSON, outputs checked before any work (suffix, not the command's own input)."""
import json

import pytest

from mpdit.cli import build_parser, input_path, main
from mpdit.training import checkpoint
from mpdit.training.config import TrainConfig
from mpdit.training.trainer import train


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


def test_an_output_that_is_the_input_is_refused_before_any_work(tmp_path, capsys):
    official = tmp_path / "dit.safetensors"
    official.write_bytes(b"the user's only copy")
    code = main(["convert", "--from", "dit", "--model", "DiT-S/8", str(official), "--out", str(official)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "the file this command reads" in err
    assert official.read_bytes() == b"the user's only copy"


def test_export_ema_prints_its_result_as_json(tmp_path, capsys):
    train(TrainConfig(model="MPDiT-S", dataset="digits", image_size=8, steps=1, global_batch_size=4,
                      run_dir=str(tmp_path), num_workers=0, sample_every=0, overrides={"stages": ((4, 1), (2, 1))}))
    out = tmp_path / "ema.safetensors"
    capsys.readouterr()
    assert main(["export-ema", checkpoint.latest(str(tmp_path)), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"out": str(out), "model": "MPDiT-S", "step": 1, "tensors": printed["tensors"]}
    assert printed["tensors"] > 0 and out.stat().st_size > 0
