"""Whole models on kernel_backend="cuda" (the C++ extension; its C++ loops on a CPU) against
the torch backend, and the package without the extension."""
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from mpdit import create_model
from mpdit_kernels import CUDA_OPS, TORCH_OPS, KernelUnavailable, check_backend, native, resolve
from model_utils import assert_same_function, random_inputs, randomize_, twin_models

needs_extension = pytest.mark.skipif(os.environ.get("MPDIT_NATIVE_BUILD") == "0",
                                     reason="MPDIT_NATIVE_BUILD=0: the extension was deliberately not built")
DEVICE = "cuda" if torch.cuda.is_available() and native.WITH_CUDA else "cpu"


@needs_extension
def test_mpdit_s_cuda_backend_equals_torch_with_every_parameter_gradient():
    torch_model = randomize_(create_model("MPDiT-S", latent_size=16), std=0.02).to(DEVICE)
    native_model = create_model("MPDiT-S", latent_size=16, kernel_backend="cuda").to(DEVICE)
    native_model.load_state_dict(torch_model.state_dict())
    x, t, y = (v.to(DEVICE) for v in random_inputs(torch_model, batch=2))
    assert_same_function(torch_model, native_model, x, t, y)


@needs_extension
@pytest.mark.parametrize("name, overrides", [
    ("DiT-S/2", {"latent_size": 8}),
    ("MPDiT-S", {"latent_size": 16, "stages": [(8, 1), (4, 1), (2, 1)]}),
    ("MPDiT-S", {"latent_size": 8, "skip": False, "class_tokens": 0}),
])
def test_other_schedules_and_ablations(name, overrides):
    torch_model, native_model = twin_models(name, DEVICE, "cuda", **overrides)
    x, t, y = (v.to(DEVICE) for v in random_inputs(torch_model, batch=3))
    assert_same_function(torch_model, native_model, x, t, y)


@needs_extension
def test_compiled_cuda_backend_model_is_one_graph():
    """Fake implementations registered for the C++ ops: torch.compile(fullgraph=True) traces them."""
    torch_model, native_model = twin_models("MPDiT-S", DEVICE, "cuda", latent_size=8, stages=[(4, 1), (2, 1)])
    native_model.check_values = False
    compiled = torch.compile(native_model, fullgraph=True, backend="aot_eager")
    x, t, y = (v.to(DEVICE) for v in random_inputs(torch_model, batch=2))
    torch.testing.assert_close(compiled(x, t, y), torch_model(x, t, y), rtol=1e-4, atol=1e-5)


@needs_extension
def test_backend_resolution():
    cpu = torch.empty(1)
    assert check_backend("cuda") == "cuda"
    assert resolve("cuda", cpu) is CUDA_OPS  # the C++ loops on CPU tensors
    assert resolve("auto", cpu) is TORCH_OPS  # auto keeps eager PyTorch on a CPU (faster there, see README)
    with pytest.raises(KernelUnavailable, match=r"tensors on meta are not supported"):
        resolve("cuda", torch.empty(1, device="meta"))


def test_cuda_tensors_on_a_build_without_cuda_kernels_are_refused(monkeypatch):
    monkeypatch.setattr(native, "AVAILABLE", True)
    monkeypatch.setattr(native, "WITH_CUDA", False)
    like_cuda = SimpleNamespace(device=torch.device("cuda", 0))
    with pytest.raises(KernelUnavailable, match=r"built without CUDA kernels .* on a machine with nvcc"):
        native.require_native("kernel_backend='cuda'", like_cuda)


def test_asking_for_an_absent_extension_by_name_is_an_error(monkeypatch):
    monkeypatch.setattr(native, "AVAILABLE", False)
    with pytest.raises(KernelUnavailable, match=r"kernel_backend='cuda': the native extension mpdit_kernels._C is "
                                                r"not built; reinstall with `pip install --no-build-isolation"):
        with torch.device("meta"):
            create_model("MPDiT-S", kernel_backend="cuda")
    with pytest.raises(KernelUnavailable, match=r"fine_entry: the native extension mpdit_kernels._C is not built"):
        native.fine_entry(torch.randn(1, 3, 4), None, torch.randn(2, 4))


WITHOUT_EXTENSION = """
import importlib.abc, logging, sys
class HideExtension(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "mpdit_kernels._C":
            raise ImportError("hidden by the test")
sys.meta_path.insert(0, HideExtension())
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
import torch
import mpdit_kernels.native, mpdit_kernels.backend
from mpdit import create_model
model = create_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)], kernel_backend="auto")
x = torch.randn(2, 4, 8, 8)
print("output", tuple(model(x, torch.rand(2), torch.tensor([1, 2])).shape))
print("native available:", mpdit_kernels.native.AVAILABLE)
"""


def test_package_imports_and_works_without_the_extension_and_says_so_once():
    run = subprocess.run([sys.executable, "-c", WITHOUT_EXTENSION], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "output (2, 4, 8, 8)" in run.stdout and "native available: False" in run.stdout
    notices = [line for line in run.stderr.splitlines() if "mpdit_kernels._C is not built" in line]
    assert len(notices) == 1, run.stderr


@needs_extension
def test_training_on_the_cuda_backend_follows_the_torch_backend(tmp_path):
    """`mpdit train --kernel-backend cuda`: the same seeded run as on torch, step by step."""
    import json

    from mpdit.training.trainer import TrainConfig, train

    losses = {}
    for backend in ("torch", "cuda"):
        run_dir = tmp_path / backend
        train(TrainConfig(model="MPDiT-S", dataset="digits", steps=4, global_batch_size=8, run_dir=str(run_dir),
                          checkpoint_every=4, log_every=1, sample_every=0, num_workers=0,
                          overrides={"stages": ((4, 1), (2, 1))}, kernel_backend=backend, precision="fp32"))
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[backend] = [row["loss"] for row in rows if "loss" in row]
    assert len(losses["cuda"]) >= 4  # a row per step (and a closing summary)
    # On a GPU the trainer turns on TF32 matmuls (10-bit mantissa inputs): the fused ops' last-bit
    # differences then reach the loss at about 1e-3; on a CPU they stay near fp32 rounding.
    assert losses["cuda"] == pytest.approx(losses["torch"], rel=2e-3 if torch.cuda.is_available() else 1e-4)
