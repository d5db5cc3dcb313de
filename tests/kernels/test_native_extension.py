"""What is particular to the native extension (csrc/): its own argument checks, its limits,
and the package without it. Its numerics are tested with the other backends' (tests/test_op_*.py)."""
import os
import subprocess
import sys

import pytest
import torch

from mpdit_kernels import KernelUnavailable, get_backend, native, ops

needs_extension = pytest.mark.skipif(os.environ.get("MPDIT_NATIVE_BUILD") == "0",
                                     reason="MPDIT_NATIVE_BUILD=0: the extension was deliberately not built")


def test_deterministic_mode_poisons_fresh_memory():
    """What the `poisoned` fixture relies on: at::empty (behind the native ops' outputs) fills with NaN."""
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.empty(3).isnan().all() and torch.empty(2, dtype=torch.bfloat16).isnan().all()
    finally:
        torch.use_deterministic_algorithms(False)


@needs_extension
def test_width_past_the_shared_memory_cache_is_refused():
    x, shift = torch.randn(1, 2, 5000), torch.randn(1, 5000)
    with pytest.raises(ValueError, match=r"adaln_modulate: width 5000 is larger than the 4096 the native "
                                         r"extension's kernels support"):
        ops.adaln_modulate(x, shift, shift, get_backend("native"))


# The C++ checks guard direct torch.ops.mpdit_native calls (csrc/checks.h). Run in a child process:
# a C++ exception that crashed the interpreter would otherwise take the whole test run down.
DIRECT_CALLS = """
import torch, mpdit_kernels
ops = torch.ops.mpdit_native
x, s = torch.randn(2, 3, 8), torch.randn(2, 8)
cases = [
    lambda: ops.residual_adaln_modulate(x, torch.randn(2, 5, 8), s, s, s, 1e-6),
    lambda: ops.adaln_modulate(x, s.double(), s, 1e-6),
    lambda: ops.adaln_modulate(x, s.bfloat16(), s, 1e-6),
    lambda: ops.adaln_modulate_backward(x, s, torch.randn(2, 3), torch.randn(2, 3).double(), x),
    lambda: ops.upsample_shuffle_norm(torch.randn(2, 4, 90), torch.randn(2, 3, 24), 2, 2, 2, 1e-6),
    lambda: ops.fine_entry(torch.randn(2, 19, 24), None, torch.randn(20, 24)),
]
for case in cases:
    try:
        case()
        print("no error")
    except ValueError as error:
        print(str(error).splitlines()[0])
"""


@needs_extension
def test_cpp_checks_raise_value_errors_naming_the_argument():
    run = subprocess.run([sys.executable, "-c", DIRECT_CALLS], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.splitlines() == [
        "residual_adaln_modulate: y has shape [2, 5, 8], expected [2, 3, 8]",
        "adaln_modulate: shift has dtype Double, expected float32, bfloat16 or float16",
        "adaln_modulate: shift has dtype BFloat16, expected Float like the other inputs "
        "(mpdit_kernels/native.py casts)",
        "adaln_modulate_backward: mean/rstd must be contiguous float32 [2, 3] on cpu, got Double [2, 3]",
        "upsample_shuffle_norm: ratio=2: expected >= 2 dividing wide's 90 channels into ratio^2 groups",
        "fine_entry: pos has 20 tokens, more than refined's 19",
    ]


def test_cuda_tensors_on_a_build_without_cuda_kernels_are_refused(monkeypatch):
    monkeypatch.setattr(native, "AVAILABLE", True)
    monkeypatch.setattr(native, "WITH_CUDA", False)
    assert native.unavailable_reason("cpu") is None
    assert "built without its CUDA kernels" in native.unavailable_reason("cuda")
    assert "on a machine with nvcc" in native.unavailable_reason(torch.device("cuda", 0))


def test_asking_for_an_absent_extension_by_name_is_an_error(monkeypatch):
    monkeypatch.setattr(native, "AVAILABLE", False)
    with pytest.raises(KernelUnavailable, match=r"kernel_backend='native': the native extension "
                                                r"mpdit_kernels._native is not built; reinstall with `pip install "
                                                r"--no-build-isolation"):
        with torch.device("meta"):
            from mpdit import create_model

            create_model("MPDiT-S", kernel_backend="native")


WITHOUT_EXTENSION = """
import importlib.abc, logging, sys
class HideExtension(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "mpdit_kernels._native":
            raise ImportError("hidden by the test")
sys.meta_path.insert(0, HideExtension())
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
import torch
import mpdit_kernels
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
    notices = [line for line in run.stderr.splitlines() if "mpdit_kernels._native is not built" in line]
    assert len(notices) == 1, run.stderr
