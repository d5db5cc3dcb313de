"""What one `mpdit bench` run measures, decided once: a frozen Plan (preset, device, dtype, models,
providers, sections, output folder) and its typed cases, in the order they run."""
import datetime
from dataclasses import dataclass

import torch

from mpdit.bench import kernel_cases
from mpdit.bench import providers as bench_providers
from mpdit.bench.model_cases import ModelSpec
from mpdit.bench.presets import PRESETS, SECTIONS, Preset


@dataclass(frozen=True)
class SetupCase:
    """The device's ceilings and each model's FLOP audit: what every other case is quoted against."""

    section = "setup"
    key = ("setup", "-", "-")
    label = "setup"


@dataclass(frozen=True)
class AttentionCase:
    """PyTorch's SDPA backends at the models' attention shapes."""

    section = "attention"
    key = ("attention", "-", "sdpa")
    label = "attention sdpa"


class _Labelled:
    @property
    def label(self) -> str:
        return " ".join(self.key)


@dataclass(frozen=True)
class ModelCase(_Labelled):
    """One section (train, inference, sampling) of one model on one provider."""

    section: str
    spec: ModelSpec
    provider: str

    @property
    def key(self) -> tuple:
        return (self.section, self.spec.label, self.provider)


@dataclass(frozen=True)
class KernelCase(_Labelled):
    """One fused op at one hidden width, on every kernel provider of the plan."""

    op: str
    width: int
    section = "kernels"

    @property
    def key(self) -> tuple:  # (section, op, width label): the stream's key of a case
        return ("kernels", self.op, f"D={self.width}")


@dataclass(frozen=True)
class Plan:
    preset: Preset
    device: str  # "cpu" or "cuda"
    specs: tuple  # the ModelSpecs measured
    requested: tuple  # the providers asked for
    providers: tuple  # those of them that run on the device
    sections: tuple
    out: str  # the results folder

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.preset.dtype) if self.device == "cuda" else torch.float32

    @property
    def kernel_providers(self) -> tuple:
        """The fused-op providers; the last is the one the others' times are quoted against."""
        return tuple(p for p in kernel_cases.PROVIDERS if p in self.providers)

    def cases(self) -> tuple:
        """Every case, in order: setup, the model sections, attention, the fused ops."""
        cases = [SetupCase()]
        for spec in self.specs:
            for provider in self.providers:
                compiled = bench_providers.split(provider).compiled
                if compiled and spec.label not in self.preset.compile_models:
                    continue
                if "train" in self.sections or "profile" in self.sections:  # the profile runs the timed step
                    cases.append(ModelCase("train", spec, provider))
                if not compiled:  # inference and sampling run eager models (compiling again costs minutes)
                    cases += [ModelCase(section, spec, provider) for section in ("inference", "sampling")
                              if section in self.sections]
        if "profile" in self.sections and self.device == "cuda":
            cases.append(AttentionCase())
        if "kernels" in self.sections and self.kernel_providers:
            cases += [KernelCase(op, width) for width in self.preset.kernel_widths for op in kernel_cases.CASES]
        return tuple(cases)

    def notes(self) -> list:
        """What the report says about providers that did not run, and why."""
        notes = [f"{provider} not run on {self.device}: {bench_providers.unavailable_reason(provider, self.device)}"
                 for provider in self.requested if provider not in self.providers]
        if self.device == "cpu" and "native" in self.providers:
            notes.append("native on a CPU runs the extension's C++ loops, not its CUDA kernels")
        if "kernels" in self.sections and "triton" not in self.kernel_providers:
            notes.append("fused-op microbenchmarks ran without the triton provider (Triton needs a CUDA device)")
        return notes

    def settings(self) -> dict:
        """The plan as JSON values: what a case's own process rebuilds it from (make_plan(**settings))."""
        return {"preset": self.preset.name, "device": self.device, "out": self.out,
                "models": [spec.label for spec in self.specs], "providers": list(self.requested),
                "sections": list(self.sections)}


def default_out(device: str, preset: str) -> str:
    """A folder in the current directory named for the run."""
    return f"bench-{datetime.date.today()}-{device}-{preset}"


def _check_choice(name: str, values, allowed) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name}={','.join(unknown)}: expected some of {', '.join(allowed)}")


def applicable_providers(providers, device: str) -> tuple:
    """The providers the backend table says can run on `device`."""
    return tuple(p for p in providers if bench_providers.unavailable_reason(p, device) is None)


def make_plan(preset: str = "default", device: str = None, out: str = None, models=None, providers=None,
              sections=None) -> Plan:
    """The plan of a run, every choice checked (ValueError naming the argument): models, providers
    and sections default to the preset's; device to cuda where there is one."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: expected one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise ValueError(f"device={device!r}: expected 'cpu'" + (" or 'cuda'" if torch.cuda.is_available() else
                                                                   " (no CUDA device here)"))
    if models:
        _check_choice("models", models, [spec.label for spec in chosen.models])
    if providers:
        _check_choice("providers", providers, bench_providers.PROVIDERS)
    if sections:
        _check_choice("sections", sections, SECTIONS)
    requested = tuple(providers or chosen.providers)
    return Plan(chosen, device, tuple(spec for spec in chosen.models if not models or spec.label in models),
                requested, applicable_providers(requested, device), tuple(sections or chosen.sections),
                out or default_out(device, chosen.name))
