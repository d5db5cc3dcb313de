"""The bench's providers: parsed into backend, compile mode and float8; which run where, and why
not; what each does to the model it times."""
import pytest

from helpers.models import allow_float8
from mpdit.bench import model_cases
from mpdit.bench.plan import BenchRequest, Plan, applicable_providers
from mpdit.bench.presets import PRESETS, ModelSpec
from mpdit.bench.providers import AUTOTUNE_MODE, AUTOTUNE_ON_CPU, Provider, split, unavailable_reason


def test_providers_parse_into_backend_compile_mode_and_float8():
    assert split("compile") == Provider("torch", "default", False)
    assert split("triton") == Provider("triton", None, False) and not split("triton").compiled
    assert split("triton+compile+fp8") == Provider("triton", "default", True)
    assert split("compile+fp8") == Provider("torch", "default", True)
    assert split("compile+autotune") == Provider("torch", AUTOTUNE_MODE, False)
    assert split("triton+compile+autotune") == Provider("triton", AUTOTUNE_MODE, False)
    with pytest.raises(ValueError, match="provider='fp8': expected one of"):
        split("fp8")


def test_autotune_providers_are_gpu_only(monkeypatch):
    monkeypatch.setattr("mpdit_kernels.triton.runtime.INTERPRET", True)
    assert unavailable_reason("compile", "cpu") is None
    for provider in ("compile+autotune", "triton+compile+autotune"):
        assert unavailable_reason(provider, "cpu") == AUTOTUNE_ON_CPU


@pytest.mark.parametrize("provider, mode", [("compile", "default"), ("compile+autotune", AUTOTUNE_MODE),
                                            ("triton", None)])
def test_the_bench_compiles_with_its_providers_mode(monkeypatch, provider, mode):
    modes = []
    monkeypatch.setattr(model_cases.torch, "compile", lambda model, mode: modes.append(mode) or model)
    model_cases.build(ModelSpec("S", "MPDiT-S", {"latent_size": 8, "stages": ((4, 1), (2, 1))}),
                      provider, "cpu")
    assert modes == ([mode] if mode else [])


def test_fp8_provider_says_why_it_cannot_run_on_a_cpu(monkeypatch):
    monkeypatch.setattr("mpdit_kernels.triton.runtime.INTERPRET", True)
    for provider in ("compile+fp8", "triton+compile+fp8"):
        reason = unavailable_reason(provider, "cpu")
        assert "torchao" in reason or "compute capability 8.9" in reason


def test_compile_providers_only_where_the_preset_asks():
    preset = PRESETS["paper"]
    specs = (ModelSpec("MPDiT-XL", "MPDiT-XL"), ModelSpec("MPDiT-B", "MPDiT-B"))
    request = BenchRequest("paper", "cuda", "-", ("MPDiT-XL", "MPDiT-B"), preset.providers, ("train", "inference"))
    paper = Plan(request, preset, specs, preset.providers)
    tasks = {case.key for case in paper.cases() if case.spec}
    assert ("train", "MPDiT-XL", "compile") in tasks and ("train", "MPDiT-XL", "triton+compile") in tasks
    assert ("train", "MPDiT-B", "compile") not in tasks
    assert ("inference", "MPDiT-XL", "compile") not in tasks and ("inference", "MPDiT-XL", "triton") in tasks


def test_triton_is_dropped_on_a_cpu_without_the_interpreter(monkeypatch):
    from mpdit_kernels.triton import runtime

    monkeypatch.setattr(runtime, "INTERPRET", False)
    assert applicable_providers(("torch", "compile", "triton", "triton+compile"), "cpu") == ("torch", "compile")


def test_the_bench_fp8_provider_converts_then_compiles(monkeypatch):
    allow_float8(monkeypatch, "cpu")
    from torchao.float8.float8_linear import Float8Linear

    from mpdit.bench import model_cases

    compiled = []
    monkeypatch.setattr(model_cases.torch, "compile", lambda model, mode: compiled.append(model) or model)
    spec = ModelSpec("S", "MPDiT-S", {"latent_size": 8, "stages": ((4, 1), (2, 1))})
    model, _ = model_cases.build(spec, "compile+fp8", "cpu")
    assert compiled == [model] and model.kernel_backend == "torch"
    assert sum(isinstance(module, Float8Linear) for module in model.modules()) == 8  # 2 blocks x qkv, proj, fc1, fc2
