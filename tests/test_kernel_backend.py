"""Whole models on the triton backend against the torch backend, and the backend switch."""
import pytest
import torch

pytest.importorskip("triton")  # the Triton kernels; the torch backend is tested without it

from mpdit import create_model
from mpdit_kernels import TORCH_OPS, TRITON_OPS, KernelUnavailable, resolve
from model_utils import assert_same_function, random_inputs, randomize_, tiny_model, twin_models


def test_mpdit_s_triton_equals_torch_with_every_parameter_gradient(device):
    """Full-width MPDiT-S (D 384, 12 blocks) at a 16 x 16 latent to keep the interpreter quick."""
    torch_model = randomize_(create_model("MPDiT-S", latent_size=16), std=0.02).to(device)
    triton_model = create_model("MPDiT-S", latent_size=16, kernel_backend="triton").to(device)
    triton_model.load_state_dict(torch_model.state_dict())
    x, t, y = (v.to(device) for v in random_inputs(torch_model, batch=2))
    assert_same_function(torch_model, triton_model, x, t, y)


@pytest.mark.parametrize("name, overrides", [
    ("DiT-S/2", {"latent_size": 8}),
    ("MPDiT-S", {"latent_size": 16, "stages": [(8, 1), (4, 1), (2, 1)]}),
    ("MPDiT-S", {"latent_size": 8, "skip": False, "class_tokens": 0}),
])
def test_other_schedules_and_ablations(device, name, overrides):
    torch_model, triton_model = twin_models(name, device, "triton", **overrides)
    x, t, y = (v.to(device) for v in random_inputs(torch_model, batch=3))
    assert_same_function(torch_model, triton_model, x, t, y)


def test_backend_resolution(monkeypatch):
    cpu = torch.empty(1)
    assert resolve("torch", cpu) is TORCH_OPS
    assert resolve("auto", cpu) is TORCH_OPS  # auto = triton on CUDA tensors only
    import mpdit_kernels._launch
    if mpdit_kernels._launch.INTERPRET:  # CPU tensors run under the interpreter (no GPU here)
        assert resolve("triton", cpu) is TRITON_OPS
    monkeypatch.setattr(mpdit_kernels._launch, "INTERPRET", False)
    with pytest.raises(KernelUnavailable, match="TRITON_INTERPRET=1"):
        resolve("triton", cpu)


def test_explicit_triton_backend_that_cannot_run_is_an_error(monkeypatch):
    import mpdit_kernels._launch
    model = tiny_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)])
    model.kernel_backend = "triton"
    monkeypatch.setattr(mpdit_kernels._launch, "INTERPRET", False)
    with pytest.raises(KernelUnavailable):
        model(*random_inputs(model))


def test_unknown_backend_name():
    with pytest.raises(ValueError, match=r"kernel_backend='cudnn': expected one of \('torch', 'triton', 'cuda', 'auto'\)"):
        with torch.device("meta"):
            create_model("MPDiT-S", kernel_backend="cudnn")


def test_compiled_triton_model_is_one_graph(device):
    """custom_op + fake implementations: torch.compile(fullgraph=True) traces the fused ops."""
    torch_model, triton_model = twin_models("MPDiT-S", device, "triton", latent_size=8, stages=[(4, 1), (2, 1)])
    triton_model.check_values = False
    compiled = torch.compile(triton_model, fullgraph=True, backend="aot_eager")
    x, t, y = (v.to(device) for v in random_inputs(torch_model, batch=2))
    torch.testing.assert_close(compiled(x, t, y), torch_model(x, t, y), rtol=1e-4, atol=1e-5)
