"""FP8 training's model transform: which layers it converts, and the clear refusal where it cannot run."""
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from helpers.models import allow_float8
from mpdit import MultiPatchTransformer, create_model, get_config
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

    monkeypatch.setattr(float8, "ALLOW_CPU", True)  # the swap itself needs no GPU
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    float8.convert_blocks_to_float8(model, "cpu")
    converted = [name for name, module in model.named_modules() if isinstance(module, Float8Linear)]
    assert converted == [name for name, module in small_model().named_modules()
                         if float8.is_block_linear(module, name)]
    assert isinstance(model.final_layer.linear, nn.Linear) and not isinstance(model.final_layer.linear, Float8Linear)
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)


def rel_error(value, reference):
    return ((value - reference).norm() / reference.norm()).item()


def forward_backward(model, call, inputs, weights, autocast):
    """The output and every parameter gradient of sum(weights * call(*inputs)), in fp32."""
    model.zero_grad()
    with torch.autocast(weights.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = call(*inputs)
    (out.float() * weights).sum().backward()
    return out.float(), {name: p.grad.float() for name, p in model.named_parameters() if p.grad is not None}


def two_block_model(backend, device):
    """MPDiT-S's two-block schedule; on a CPU at width 64, because torch's float8 product there is a
    plain loop (about a second per product at MPDiT-S's width 384)."""
    config = get_config("MPDiT-S", latent_size=8, stages=((4, 1), (2, 1)))
    if device == "cpu":
        config = replace(config, hidden_size=64, num_heads=4)
    return MultiPatchTransformer(config, kernel_backend=backend).to(device)


# compiled on the torch backend (the bench's compile+fp8), eager on triton (triton+compile+fp8 compiled
# on the H200 run; compiling it here too would cost the suite as much again)
@pytest.mark.slow
@pytest.mark.parametrize("backend, compiled", [("torch", True), ("triton", False)])
def test_float8_model_follows_fp32(monkeypatch, device, backend, compiled):
    """The converted model under bf16 autocast (compiled whole: the bench's compile+fp8, `mpdit train
    --precision fp8 --compile`) against the same weights in fp32, and in bf16, which shows that the
    products really ran in float8."""
    allow_float8(monkeypatch, device)
    reference = two_block_model(backend, device)
    with torch.no_grad():  # random everywhere: adaLN-zero's zero gates would keep the blocks out of the output
        for parameter in reference.parameters():
            parameter.normal_(0, 0.05)
    fp8 = two_block_model(backend, device)
    fp8.load_state_dict(reference.state_dict())
    float8.convert_blocks_to_float8(fp8, device)
    inputs = (torch.randn(3, 4, 8, 8, device=device), torch.rand(3, device=device),
              torch.randint(0, 1000, (3,), device=device))
    weights = torch.randn(3, 4, 8, 8, device=device)
    out32, grads32 = forward_backward(reference, reference, inputs, weights, autocast=False)
    _, grads16 = forward_backward(reference, reference, inputs, weights, autocast=True)
    call = torch.compile(fp8, fullgraph=True) if compiled else fp8
    out8, grads8 = forward_backward(fp8, call, inputs, weights, autocast=True)

    assert grads8.keys() == grads32.keys()
    # e4m3 (forward) keeps 3 mantissa bits: each product's operands are rounded within 2^-4 = 6%
    # (seen: 1.3%, bf16 0.7%)
    assert rel_error(out8, out32) < 0.05
    # the gradients go through e5m2 (2 mantissa bits): their directions still agree (seen: cosine >= 0.994)
    for name, grad in grads8.items():
        assert torch.nn.functional.cosine_similarity(grad.flatten(), grads32[name].flatten(), dim=0) > 0.98, name
    # and they are visibly coarser than bf16's (seen: 10.7% against 1.7%): the products ran in float8
    worst = {label: max(rel_error(grads[name], grads32[name]) for name in grads32)
             for label, grads in (("fp8", grads8), ("bf16", grads16))}
    assert worst["fp8"] > 3 * worst["bf16"], worst
