"""Hand-edited or damaged EMA exports: every loader (`mpdit sample`, `mpdit.load`, `train
--init`) goes through one layout check and says in one line which file, which key, which shapes."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import mpdit
from helpers.cli import run_cli
from helpers.runs import digits_config
from mpdit.training.trainer import train


@pytest.fixture
def export(digits_export):
    return digits_export


def edited(export, tmp_path, tensors=None, metadata=None):
    """A copy of the export with its tensors and metadata changed by the given functions."""
    with safe_open(export, framework="pt") as f:
        meta = dict(f.metadata())
        state = {key: f.get_tensor(key) for key in f.keys()}
    state = tensors(state) if tensors else state
    meta = metadata(meta) if metadata else meta
    out = str(tmp_path / "edited.safetensors")
    save_file(state, out, metadata=meta)
    return out


def with_config(meta, **changes):
    return {**meta, "model_config": json.dumps({**json.loads(meta["model_config"]), **changes})}


CASES = {
    "an extra tensor": (dict(tensors=lambda s: {**s, "extra.weight": torch.zeros(3)}),
                        "unexpected key 'extra.weight' (shape [3])"),
    "a missing tensor": (dict(tensors=lambda s: {k: v for k, v in s.items() if k != "final_layer.linear.bias"}),
                         "missing key 'final_layer.linear.bias'"),
    "a changed class count": (dict(metadata=lambda m: with_config(m, num_classes=12)),
                              "'y_embedder.embedding_table.weight' has shape [11, "),
    "a missing step": (dict(metadata=lambda m: {k: v for k, v in m.items() if k != "step"}),
                       "its metadata has no 'step' entry"),
    "broken JSON": (dict(metadata=lambda m: {**m, "model_config": m["model_config"][:-5]}),
                    "its metadata is damaged"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hand_edited_export_is_one_line_in_every_loader(export, tmp_path, case):
    edits, expected = CASES[case]
    path = edited(export, tmp_path, **edits)
    with pytest.raises(ValueError) as error:
        mpdit.load(path)
    assert path in str(error.value) and expected in str(error.value) and "\n" not in str(error.value)
    assert expected in run_cli("sample", path, "--out", tmp_path / "s.npz", "--steps", "1", "--per-class", "1").error
    if case != "a changed class count":  # --init reads the tensors alone, and those still fit the model
        with pytest.raises(ValueError, match="init=|checkpoint="):
            train(digits_config(tmp_path / "run", steps=1, init=path))
