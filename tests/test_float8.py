"""FP8 training's model transform: which layers it converts, and the clear refusal where it cannot run."""
import pytest
import torch
import torch.nn as nn

from mpdit import create_model
from mpdit.models import float8


def small_model():
    return create_model("MPDiT-S", latent_size=8, stages=((4, 1), (2, 1)))


def test_only_the_blocks_linear_layers_are_selected():
    chosen = [name for name, module in small_model().named_modules() if float8.is_block_linear(module, name)]
    assert chosen == [f"blocks.{i}.{layer}" for i in range(2) for layer in ("attn.qkv", "attn.proj", "mlp.fc1",
                                                                              "mlp.fc2")]


def test_refused_with_one_clear_reason_on_a_cpu():
    with pytest.raises(ValueError, match=r"precision='fp8' needs (torchao: pip install -e '\.\[fp8\]'|a CUDA GPU "
                                         r"of compute capability 8\.9)"):
        float8.convert_blocks_to_float8(small_model(), "cpu")


def test_conversion_swaps_those_layers_and_keeps_the_weights(monkeypatch):
    pytest.importorskip("torchao.float8")
    from torchao.float8.float8_linear import Float8Linear

    monkeypatch.setattr(float8, "float8_unavailable_reason", lambda device: None)  # the swap itself needs no GPU
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    float8.convert_blocks_to_float8(model, "cpu")
    converted = [name for name, module in model.named_modules() if isinstance(module, Float8Linear)]
    assert converted == [name for name, module in small_model().named_modules()
                         if float8.is_block_linear(module, name)]
    assert isinstance(model.final_layer.linear, nn.Linear) and not isinstance(model.final_layer.linear, Float8Linear)
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
