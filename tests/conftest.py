"""Fixtures shared by the suite: seeds, the kernels' backends and poisoned outputs, and what many
tests would otherwise rebuild (a trained run folder, its EMA export, converted official files),
built once per session. A test that changes such a thing copies it to its tmp_path first."""
import os
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch

pytest.register_assert_rewrite("helpers")

# Without a GPU the Triton kernels run through Triton's interpreter, for the kernel tests of this
# process: switched on while mpdit_kernels is imported (Triton decorates the kernels then, and
# mpdit_kernels reads the variable) and kept on through Triton's own setting, which its later
# imports read, so that the processes the tests start get the caller's environment, without it.
if not torch.cuda.is_available():
    _given = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    import mpdit_kernels  # noqa: E402,F401

    try:
        from triton import knobs

        knobs.runtime.interpret = True
    except ImportError:  # no Triton here, or one without knobs: the variable stays set
        _given = "1"
    if _given is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _given

from helpers.runs import digits_config  # noqa: E402


@pytest.fixture(autouse=True)
def seed():
    """Every test draws its own reproducible random inputs."""
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """The feature and classifier cache of this session (and of the processes it starts), not the
    user's ~/.cache."""
    path = tmp_path_factory.mktemp("mpdit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPDIT_CACHE_DIR", str(path))
        yield path


# --------------------------------------------------------------------------- kernels
@pytest.fixture
def device():
    """Where kernel tests run: the GPU when there is one, else the CPU through the interpreter."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class _PoisonedTorch:
    """The torch module, except that fresh floating-point buffers come filled with NaN."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def _poison(tensor):
        return tensor.fill_(float("nan")) if tensor.is_floating_point() else tensor

    def empty(self, *args, **kwargs):
        return self._poison(torch.empty(*args, **kwargs))

    def empty_like(self, *args, **kwargs):
        return self._poison(torch.empty_like(*args, **kwargs))


@pytest.fixture
def poisoned(monkeypatch):
    """Kernel outputs start as NaN, so an element a kernel fails to write fails the test: the
    Triton launchers get a torch whose empty() fills with NaN; the native ops allocate with
    at::empty, which deterministic mode fills with NaN."""
    import mpdit_kernels.triton.adaln
    import mpdit_kernels.triton.fno
    import mpdit_kernels.triton.upsample

    for module in (mpdit_kernels.triton.adaln, mpdit_kernels.triton.fno, mpdit_kernels.triton.upsample):
        monkeypatch.setattr(module, "torch", _PoisonedTorch())
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


class Fused(NamedTuple):
    backend: object  # mpdit_kernels.backend.Backend
    device: str


def _fused_cases():
    """(backend, device) pairs under test: Triton on the GPU (else interpreted on the CPU); the
    native extension's C++ loops on the CPU and, with a GPU, its CUDA kernels."""
    gpu = torch.cuda.is_available()
    return [("triton", "cuda" if gpu else "cpu"), ("native", "cpu")] + ([("native", "cuda")] if gpu else [])


def _backend_on(case) -> Fused:
    """The (backend name, device) case from the table. Skipped only where it cannot exist (Triton
    not installed; the extension deliberately not built): a build that failed silently makes
    get_backend raise, a failure rather than a skip."""
    from mpdit_kernels.backend import get_backend
    from mpdit_kernels.triton import runtime

    name, device = case
    if name == "triton" and not runtime.AVAILABLE:
        pytest.skip("Triton is not installed")
    if name == "native" and os.environ.get("MPDIT_NATIVE_BUILD") == "0":
        pytest.skip("MPDIT_NATIVE_BUILD=0: the extension was deliberately not built")
    return Fused(get_backend(name), device)


@pytest.fixture(params=_fused_cases(), ids=lambda case: "-".join(case))
def fused(request):
    """A fused backend from the table and the device it runs on."""
    return _backend_on(request.param)


@pytest.fixture(params=_fused_cases() + [("torch", "cpu"), ("auto", "cpu")], ids=lambda case: "-".join(case))
def every_backend(request):
    """Every backend of the table with a device, the reference (torch) and auto included: what
    all of them must refuse alike (bad inputs)."""
    return _backend_on(request.param)


# --------------------------------------------------------------------------- shared files
@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """The tests' tiny run (helpers.runs) trained for 2 steps, a checkpoint at each: folder,
    checkpoint (the newest, step 2), config. Read-only: copy it (helpers.runs.copy_run) to change it."""
    from mpdit.training import checkpoint
    from mpdit.training.trainer import train

    folder = tmp_path_factory.mktemp("digits-run") / "run"
    config = digits_config(folder, steps=2)
    train(config)
    return SimpleNamespace(folder=folder, checkpoint=checkpoint.latest(str(folder)), config=config)


@pytest.fixture(scope="session")
def digits_export(digits_run, tmp_path_factory):
    """The EMA export (.safetensors) of digits_run's newest checkpoint."""
    from mpdit.io import export_ema, load_checkpoint

    path = tmp_path_factory.mktemp("digits-export") / "ema.safetensors"
    return export_ema(load_checkpoint(digits_run.checkpoint), str(path))


@pytest.fixture(scope="session", params=[("sit", "SiT-S/8"), ("dit", "DiT-S/8")], ids=["sit", "dit"])
def converted_pixel_model(request, tmp_path_factory):
    """An official SiT-S/8 or DiT-S/8 on 16 x 16 RGB pixels (10 classes, random weights), converted
    by `mpdit convert --from`: (family, name, engine .safetensors)."""
    from helpers.cli import run_cli
    from helpers.models import official_state
    from mpdit.compat import DiT_models, SiT_models

    family, name = request.param
    registry = {"dit": DiT_models, "sit": SiT_models}[family]
    folder = tmp_path_factory.mktemp(f"converted-{family}")
    torch.manual_seed(0)
    torch.save(official_state(registry[name], input_size=16, in_channels=3, num_classes=10), folder / "official.pt")
    run_cli("convert", "--from", family, "--model", name, folder / "official.pt", "--out",
            folder / "engine.safetensors").ok()
    return family, name, str(folder / "engine.safetensors")
