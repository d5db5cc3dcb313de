"""Whole models on each fused backend against the torch backend, and the backend table."""
import json
import warnings

import pytest
import torch

from helpers.models import assert_same_function, random_inputs, randomize_, tiny_model, twin_models
from mpdit import create_model
from mpdit_kernels import BACKEND_NAMES, BACKENDS, KernelUnavailable, get_backend
from mpdit_kernels.backend import AUTO, NATIVE, TORCH, TRITON


@pytest.mark.slow
def test_mpdit_s_equals_torch_with_every_parameter_gradient(fused):
    """Full-width MPDiT-S (D 384, 12 blocks) at a 16 x 16 latent to keep the interpreter quick."""
    torch_model = randomize_(create_model("MPDiT-S", latent_size=16), std=0.02).to(fused.device)
    fused_model = create_model("MPDiT-S", latent_size=16, kernel_backend=fused.backend.name).to(fused.device)
    fused_model.load_state_dict(torch_model.state_dict())
    assert {block.backend for block in fused_model.blocks} == {fused.backend}
    x, t, y = (v.to(fused.device) for v in random_inputs(torch_model, batch=2))
    assert_same_function(torch_model, fused_model, x, t, y)


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [
    ("DiT-S/2", {"latent_size": 8}),
    ("MPDiT-S", {"latent_size": 16, "stages": [(8, 1), (4, 1), (2, 1)]}),
    ("MPDiT-S", {"latent_size": 8, "skip": False, "class_tokens": 0}),
])
def test_other_schedules_and_ablations(fused, name, overrides):
    torch_model, fused_model = twin_models(name, fused.device, fused.backend.name, **overrides)
    x, t, y = (v.to(fused.device) for v in random_inputs(torch_model, batch=3))
    assert_same_function(torch_model, fused_model, x, t, y)


@pytest.mark.slow
def test_compiled_model_is_one_graph(fused):
    """custom ops with fake implementations: torch.compile(fullgraph=True) traces every fused op."""
    torch_model, fused_model = twin_models("MPDiT-S", fused.device, fused.backend.name, latent_size=8,
                                           stages=[(4, 1), (2, 1)])
    fused_model.check_values = False
    compiled = torch.compile(fused_model, fullgraph=True, backend="aot_eager")
    x, t, y = (v.to(fused.device) for v in random_inputs(torch_model, batch=2))
    torch.testing.assert_close(compiled(x, t, y), torch_model(x, t, y), rtol=1e-4, atol=1e-5)
    # under autocast too (the ops ask for the autocast dtype while they are traced)
    with torch.autocast(torch.device(fused.device).type, dtype=torch.bfloat16):
        out = torch.compile(fused_model, fullgraph=True, backend="aot_eager")(x, t, y)
        expected = torch_model(x, t, y)
    torch.testing.assert_close(out.float(), expected.float(), rtol=0.05, atol=0.05)  # bf16 matrix products


def test_training_follows_the_torch_backend(fused, tmp_path):
    """`mpdit train --kernel-backend <fused>`: the same seeded run as on torch, step by step."""
    from mpdit.training.config import TrainConfig
    from mpdit.training.trainer import train
    from mpdit_kernels.triton import runtime

    if fused.backend is TRITON and runtime.INTERPRET:
        pytest.skip("interpreted Triton: a minute per step; the whole-model tests above cover its numerics")
    if fused.device == "cpu" and torch.cuda.is_available():
        pytest.skip("the trainer runs on the GPU here; native's C++ loops are covered by the other tests")
    losses = {}
    for backend in ("torch", fused.backend.name):
        run_dir = tmp_path / backend
        train(TrainConfig(model="MPDiT-S", dataset="digits", steps=3, global_batch_size=8, run_dir=str(run_dir),
                          checkpoint_every=3, log_every=1, sample_every=0, num_workers=0,
                          overrides={"stages": ((4, 1), (2, 1))}, kernel_backend=backend, precision="fp32"))
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[backend] = [row["loss"] for row in rows if "loss" in row]
    assert len(losses["torch"]) >= 3  # a row per step (and a closing summary)
    # fp32 throughout (the library leaves TF32 off; only the command line turns it on)
    assert losses[fused.backend.name] == pytest.approx(losses["torch"], rel=1e-4)


def test_switching_backends_rebinds_every_module():
    model = tiny_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)])
    bound = lambda: {m.backend for m in model.modules() if "backend" in vars(m)}
    assert bound() == {TORCH} and model.kernel_backend == "torch"
    model.kernel_backend = "auto"
    # the model, its 2 blocks, the upsampler, the final layer and the FNO embedding
    assert bound() == {AUTO} and len([m for m in model.modules() if "backend" in vars(m)]) == 6


def test_the_table():
    assert BACKEND_NAMES == ("torch", "triton", "native", "auto")
    assert all(BACKENDS[name].name == name for name in BACKEND_NAMES)
    assert TORCH.adaln is TORCH.fno is None  # the torch backend runs every op's reference
    assert NATIVE.fno is None and NATIVE.fine_entry.backward is None  # fine_entry's backward needs no kernel


def test_auto_picks_per_device(monkeypatch):
    cpu = torch.empty(1)
    assert AUTO.pick(cpu) is TORCH and TORCH.pick(cpu) is TORCH and TRITON.pick(cpu) is TRITON
    cuda_like = torch.empty(1, device="meta")  # a device auto knows no kernels for
    assert AUTO.pick(cuda_like) is TORCH


def test_unknown_backend_name():
    with pytest.raises(ValueError, match=r"kernel_backend='cudnn': expected one of \('torch', 'triton', 'native', "
                                         r"'auto'\)"):
        with torch.device("meta"):
            create_model("MPDiT-S", kernel_backend="cudnn")


def test_cuda_is_a_deprecated_alias_of_native():
    with pytest.warns(FutureWarning, match="kernel_backend='cuda' is deprecated .* use 'native'"):
        assert get_backend("cuda") is NATIVE
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_backend("native") is NATIVE


def test_explicit_triton_backend_that_cannot_run_is_an_error(monkeypatch):
    from mpdit_kernels.triton import runtime

    if not runtime.AVAILABLE:
        pytest.skip("Triton is not installed")
    model = tiny_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)])
    model.kernel_backend = "triton"
    monkeypatch.setattr(runtime, "INTERPRET", False)
    with pytest.raises(KernelUnavailable, match=r"kernel_backend='triton': got CPU tensors; Triton kernels need CUDA "
                                                r"tensors, or TRITON_INTERPRET=1"):
        model(*random_inputs(model))


def test_absent_triton_is_refused_by_name_and_skipped_by_auto(monkeypatch):
    from mpdit_kernels.triton import runtime

    monkeypatch.setattr(runtime, "AVAILABLE", False)
    with pytest.raises(KernelUnavailable, match=r"kernel_backend='triton': Triton is not installed"):
        get_backend("triton")
    assert get_backend("auto") is AUTO


@pytest.mark.slow
def test_compiled_auto_model_is_one_graph():
    """auto picks per call, inside the traced forward: it must not break the graph."""
    model = randomize_(tiny_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)]))
    model.kernel_backend = "auto"
    model.check_values = False
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x, t, y = random_inputs(model, batch=2)
    torch.testing.assert_close(compiled(x, t, y), model(x, t, y), rtol=1e-5, atol=1e-6)
