"""The C++/CUDA extension's ops (kernel_backend="cuda") against the same references and
tolerances as the Triton kernels: the C++ loops on CPU tensors, the CUDA kernels on a GPU."""
import os
import subprocess
import sys

import pytest
import torch

if os.environ.get("MPDIT_NATIVE_BUILD") == "0":
    pytest.skip("MPDIT_NATIVE_BUILD=0: the extension was deliberately not built", allow_module_level=True)

# Not importorskip: a build that silently failed must fail these tests, not skip them.
from mpdit_kernels import _C, native  # noqa: E402
from kernel_checks import (ADALN_SHAPES, DTYPES, FINE_CASES, UPSAMPLE_CASES, adaln_inputs, check_op,  # noqa: E402
                           check_strided_rows_and_expanded_gradients, fine_entry_inputs, upsample_inputs)
from mpdit_kernels.adaln import adaln_modulate_ref, residual_adaln_modulate_ref  # noqa: E402
from mpdit_kernels.upsample import fine_entry_ref, upsample_shuffle_norm_ref  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and _C.with_cuda else [])


@pytest.fixture(params=DEVICES)
def native_device(request):
    return request.param


@pytest.fixture
def poisoned_native():
    """The C++ ops allocate with at::empty: deterministic mode fills fresh memory with NaN,
    so an element a kernel fails to write fails the test."""
    torch.use_deterministic_algorithms(True)
    assert torch.utils.deterministic.fill_uninitialized_memory
    yield
    torch.use_deterministic_algorithms(False)


def test_deterministic_mode_poisons_fresh_memory():
    """What poisoned_native relies on: at::empty (behind torch.empty and the ops' outputs) fills with NaN."""
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.empty(3).isnan().all() and torch.empty(2, dtype=torch.bfloat16).isnan().all()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ADALN_SHAPES)
def test_residual_adaln_modulate(poisoned_native, native_device, dtype, shape):
    check_op("residual_adaln_modulate", native.residual_adaln_modulate, residual_adaln_modulate_ref,
             adaln_inputs(*shape, native_device), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ADALN_SHAPES)
def test_adaln_modulate(poisoned_native, native_device, dtype, shape):
    x, _, _, shift, scale = adaln_inputs(*shape, native_device)
    check_op("adaln_modulate", native.adaln_modulate, adaln_modulate_ref, (x, shift, scale), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", UPSAMPLE_CASES)
def test_upsample_shuffle_norm(poisoned_native, native_device, dtype, case):
    _, h, w, _, _, r = case
    check_op("upsample_shuffle_norm", lambda a, b: native.upsample_shuffle_norm(a, b, r, h, w),
             lambda a, b: upsample_shuffle_norm_ref(a, b, r, h, w), upsample_inputs(case, native_device), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FINE_CASES)
@pytest.mark.parametrize("with_skip", [True, False])
def test_fine_entry(poisoned_native, native_device, dtype, case, with_skip):
    check_op("fine_entry", native.fine_entry, fine_entry_ref, fine_entry_inputs(case, with_skip, native_device), dtype)


def test_strided_rows_and_expanded_gradients(poisoned_native, native_device):
    check_strided_rows_and_expanded_gradients(native.residual_adaln_modulate, residual_adaln_modulate_ref,
                                              native_device)


def test_mixed_dtypes_follow_eager_promotion(native_device):
    """An fp32 residual stream meets bf16 branch outputs: outputs and gradients take eager's dtypes."""
    x = torch.randn(2, 17, 72, device=native_device, requires_grad=True)
    y, gate, shift, scale = (t.bfloat16().requires_grad_() for t in adaln_inputs(2, 17, 72, native_device)[1:])
    x_out, h = native.residual_adaln_modulate(x, y, gate, shift, scale)
    assert (x_out.dtype, h.dtype) == (torch.float32, torch.float32)
    ref_out, ref_h = residual_adaln_modulate_ref(x, y.float(), gate.float(), shift.float(), scale.float())
    torch.testing.assert_close(x_out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(h.sum(), (x, y, gate, shift, scale))
    assert [g.dtype for g in grads] == [torch.float32] + [torch.bfloat16] * 4


def test_opcheck(native_device):
    """Schema, fake implementations and autograd registrations agree with the kernels."""
    x, y, gate, shift, scale = (t.requires_grad_() for t in adaln_inputs(2, 17, 24, native_device))
    ops = torch.ops.mpdit_ext
    torch.library.opcheck(ops.residual_adaln_modulate.default, (x, y, gate, shift, scale, 1e-6))
    torch.library.opcheck(ops.adaln_modulate.default, (x, shift, scale, 1e-6))
    wide = torch.randn(2, 4, 4 * 24, device=native_device, requires_grad=True)
    cls = torch.randn(2, 3, 24, device=native_device, requires_grad=True)
    torch.library.opcheck(ops.upsample_shuffle_norm.default, (wide, cls, 2, 2, 2, 1e-6))
    refined = torch.randn(2, 19, 24, device=native_device, requires_grad=True)
    skip = torch.randn(2, 16, 24, device=native_device, requires_grad=True)
    torch.library.opcheck(ops.fine_entry.default, (refined, skip, torch.randn(16, 24, device=native_device)))


def _adaln_case(x=(2, 17, 72), y=(2, 17, 72), gate=(2, 72), shift=(2, 72), scale=(2, 72), dtype=torch.float32):
    return [torch.randn(s).to(dtype) for s in (x, y, gate, shift, scale)]


@pytest.mark.parametrize("call, message", [
    (lambda: native.residual_adaln_modulate(*_adaln_case(y=(2, 5, 72))),
     r"residual_adaln_modulate: y has shape \(2, 5, 72\), expected \(2, 17, 72\)"),
    (lambda: native.residual_adaln_modulate(*_adaln_case(gate=(1, 72))),
     r"residual_adaln_modulate: gate has shape \(1, 72\), expected \(2, 72\)"),
    (lambda: native.adaln_modulate(torch.randn(17, 72), torch.randn(2, 72), torch.randn(2, 72)),
     r"adaln_modulate: x must be a \(B, L, D\) tensor, got \(17, 72\)"),
    (lambda: native.adaln_modulate(torch.randn(1, 2, 5000), torch.randn(1, 5000), torch.randn(1, 5000)),
     r"adaln_modulate: width 5000 is larger than the 4096 the extension's kernels support"),
    (lambda: native.residual_adaln_modulate(*_adaln_case(dtype=torch.float64)),
     r"residual_adaln_modulate: x has dtype torch.float64, expected one of float32, bfloat16, float16"),
    (lambda: native.upsample_shuffle_norm(torch.randn(2, 5, 96), torch.randn(2, 3, 24), 2, 2, 2),
     r"upsample_shuffle_norm: wide has 5 tokens, expected grid_h \* grid_w = 4"),
    (lambda: native.upsample_shuffle_norm(torch.randn(2, 4, 90), torch.randn(2, 3, 24), 2, 2, 2),
     r"ratio=2: expected >= 2 dividing wide's 90 channels"),
    (lambda: native.upsample_shuffle_norm(torch.randn(2, 4, 96), torch.randn(2, 3, 20), 2, 2, 2),
     r"upsample_shuffle_norm: cls has shape \(2, 3, 20\), expected \(2, 3, 24\)"),
    (lambda: native.fine_entry(torch.randn(2, 19, 24), torch.randn(2, 15, 24), torch.randn(16, 24)),
     r"fine_entry: skip has shape \(2, 15, 24\), expected \(2, 16, 24\)"),
    (lambda: native.fine_entry(torch.randn(2, 19, 24), None, torch.randn(20, 24)),
     r"fine_entry: pos has 20 tokens, more than refined's 19"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(call, message):
    """The wrappers check in Python, with the Triton ops' messages, before calling C++."""
    with pytest.raises(ValueError, match=message):
        call()


# The C++ checks guard direct torch.ops calls (csrc/checks.h). Run in a child process: a C++
# exception that crashed the interpreter would otherwise take the whole test run down with it.
DIRECT_CALLS = """
import torch, mpdit_kernels.native
ops = torch.ops.mpdit_ext
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


def test_cpp_checks_raise_value_errors_naming_the_argument():
    run = subprocess.run([sys.executable, "-c", DIRECT_CALLS], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.splitlines() == [
        "residual_adaln_modulate: y has shape [2, 5, 8], expected [2, 3, 8]",
        "adaln_modulate: shift has dtype Double, expected float32, bfloat16 or float16",
        "adaln_modulate: shift has dtype BFloat16, expected Float like the other inputs (the Python wrapper promotes)",
        "adaln_modulate_backward: mean/rstd must be contiguous float32 [2, 3] on cpu, got Double [2, 3]",
        "upsample_shuffle_norm: ratio=2: expected >= 2 dividing wide's 90 channels into ratio^2 groups",
        "fine_entry: pos has 20 tokens, more than refined's 19",
    ]
