"""Every command's file inputs, fed with truncated, empty, wrong-family and hand-edited versions
of valid files: each run ends with one line on stderr and a non-zero exit, never a traceback,
and never writes its output."""
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from helpers.cli import run_cli


@pytest.fixture(scope="module")
def valid(digits_run, digits_export, tmp_path_factory):
    """A checkpoint, its export, a sample batch: the valid files the variants are made from."""
    images = str(tmp_path_factory.mktemp("valid") / "images.npz")
    np.savez(images, arr_0=np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    return {".pt": digits_run.checkpoint, ".safetensors": digits_export, ".npz": images}


def _metadata_edit(source, out):
    with safe_open(source, framework="pt") as f:
        meta, state = dict(f.metadata()), {key: f.get_tensor(key) for key in f.keys()}
    meta["model_config"] = json.dumps({**json.loads(meta["model_config"]), "hidden_size": 7})
    save_file(state, out, metadata=meta)


def variant(kind: str, source: str, folder, suffix: str) -> str:
    out = str(folder / f"{kind}{suffix}")
    data = open(source, "rb").read()
    if kind == "truncated":
        open(out, "wb").write(data[:len(data) // 2])
    elif kind == "empty":
        open(out, "wb").close()
    elif kind == "text":  # another family of file under the right name
        open(out, "w").write("not this kind of file\n")
    elif kind == "wrong_family":  # a valid file of another kind: a tensor dict, an array, a bare state
        if suffix == ".pt":
            torch.save({"weights": torch.zeros(2)}, out)
        elif suffix == ".safetensors":
            save_file({"x": torch.zeros(2)}, out)
        else:
            np.savez(out, labels=np.arange(3))
    elif kind == "hand_edited":
        if suffix == ".safetensors":
            _metadata_edit(source, out)
        elif suffix == ".pt":
            state = torch.load(source, weights_only=False)
            state["ema"] = {k: v[..., :1] for k, v in state["ema"].items()}  # every tensor cut
            torch.save(state, out)
        else:
            np.savez(out, arr_0=np.random.default_rng(0).random((6, 16, 16, 3)))  # floats
    return out


COMMANDS = {  # (the suffix of the input, the argv with {input} and {out})
    "sample a checkpoint": (".pt", ["sample", "{input}", "--out", "{out}.npz", "--steps", "1"]),
    "sample an export": (".safetensors", ["sample", "{input}", "--out", "{out}.npz", "--steps", "1"]),
    "export-ema": (".pt", ["export-ema", "{input}", "--out", "{out}.safetensors"]),
    "convert --to": (".safetensors", ["convert", "{input}", "--to", "dit", "--out", "{out}.pt"]),
    "convert --from": (".pt", ["convert", "{input}", "--from", "dit", "--model", "DiT-S/8", "--out",
                               "{out}.safetensors"]),
    "train --init": (".safetensors", ["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1",
                                      "--global-batch-size", "8", "--num-workers", "0", "--run-dir", "{out}",
                                      "--init", "{input}"]),
    "train --resume": (".pt", ["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1",
                               "--global-batch-size", "8", "--num-workers", "0", "--run-dir", "{out}",
                               "--resume", "{input}"]),
    "eval": (".npz", ["eval", "{reference}", "{input}", "--no-progress"]),
    "eval digits": (".npz", ["eval", "--features", "digits", "{input}"]),
}
KINDS = ("truncated", "empty", "text", "wrong_family", "hand_edited")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_input_file_is_one_line_and_a_failed_exit(valid, tmp_path, command, kind, monkeypatch):
    monkeypatch.setattr("mpdit.evaluation.evaluator.find_weights", lambda path=None: pytest.fail("got to weights"))
    suffix, argv = COMMANDS[command]
    if command == "eval digits" and kind == "hand_edited":
        pytest.skip("a float batch is the 'float' case of the eval tests; digits want one channel")
    source = variant(kind, valid[suffix], tmp_path, suffix)
    out = str(tmp_path / "out")
    argv = [part.format(input=source, out=out, reference=valid[".npz"]) for part in argv]
    result = run_cli(*argv)
    code, err = result.code, result.err
    assert code != 0, (command, kind, err)
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # progress bars aside
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, (command, kind, err)
    assert not any(tmp_path.glob("out.*"))  # nothing written


@pytest.mark.parametrize("argv", [
    ["sample", "{folder}", "--out", "{out}.npz"],
    ["export-ema", "{folder}", "--out", "{out}.safetensors"],
    ["convert", "{folder}", "--to", "dit", "--out", "{out}.pt"],
    ["convert", "{folder}", "--from", "dit", "--model", "DiT-S/8", "--out", "{out}.safetensors"],
    ["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "8",
     "--run-dir", "{out}", "--init", "{folder}"],
    ["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "8",
     "--run-dir", "{out}", "--resume", "{folder}"],
], ids=["sample", "export-ema", "convert --to", "convert --from", "train --init", "train --resume"])
def test_a_run_folder_given_for_a_checkpoint_is_named_as_a_folder(digits_run, tmp_path, argv):
    out = tmp_path / "out"
    result = run_cli(*(part.format(folder=digits_run.folder, out=out) for part in argv))
    assert f"={str(digits_run.folder)!r}: is a folder, expected a checkpoint file" in result.error
    assert not any(tmp_path.glob("out*"))
