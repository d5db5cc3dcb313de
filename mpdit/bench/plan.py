"""What one `mpdit bench` run measures, decided once: a frozen Plan (preset, device, dtype, models,
providers, sections, output folder) and its typed cases, in the order they run."""
import dataclasses
import datetime
import json
from dataclasses import dataclass
from typing import Optional

import torch

from mpdit.bench import kernel_cases
from mpdit.bench import providers as bench_providers
from mpdit.bench.presets import PRESETS, SECTIONS, ModelSpec, Preset
from mpdit.options import check_choices, csv_list, option


@dataclass(frozen=True)
class Case:
    """What runs and is recorded as one: setup (the device's ceilings and each model's FLOP audit,
    what every other case is quoted against), a section (train, inference, sampling) of one model
    on one provider, attention (SDPA's backends at the models' attention shapes), or kernels (one
    fused op at one hidden width on every kernel provider). Its key is its line in bench.jsonl."""

    section: str
    spec: Optional[ModelSpec] = None
    provider: str = "-"
    op: Optional[str] = None
    width: Optional[int] = None

    @property
    def key(self) -> tuple:
        if self.section == "kernels":
            return ("kernels", self.op, f"D={self.width}")
        return (self.section, self.spec.label if self.spec else "-", self.provider)

    @property
    def label(self) -> str:
        return " ".join(part for part in self.key if part != "-")


SETUP = Case("setup")


@dataclass(frozen=True)
class BenchRequest:
    """What `mpdit bench` measures (its options that change the figures); `plan()` checks and
    resolves it. Models, providers and sections default to the preset's."""

    preset: str = option("default", "which models, providers and sizes (each preset: see above)",
                         choices=tuple(PRESETS))
    device: Optional[str] = option(None, "default: cuda when present", choices=("cpu", "cuda"))
    out: Optional[str] = option(None, "results folder (default: bench-<date>-<device>-<preset> here); bench.jsonl "
                                      "there grows as cases finish", metavar="DIR")
    models: Optional[tuple] = option(None, "a subset of the preset's models", type=csv_list, metavar="A,B")
    providers: Optional[tuple] = option(None, ", ".join(bench_providers.PROVIDERS), type=csv_list, metavar="A,B")
    sections: Optional[tuple] = option(None, ", ".join(SECTIONS), type=csv_list, metavar="A,B")

    def plan(self) -> "Plan":
        """The plan of the run, every choice checked (ValueError naming the argument)."""
        check_choices(self)  # the preset, the device
        preset = PRESETS[self.preset]
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda': no CUDA device here; expected 'cpu'")
        for name, allowed in (("models", [spec.label for spec in preset.models]),
                              ("providers", bench_providers.PROVIDERS), ("sections", SECTIONS)):
            unknown = [value for value in getattr(self, name) or () if value not in allowed]
            if unknown:
                raise ValueError(f"{name}={','.join(unknown)}: expected some of {', '.join(allowed)}")
        specs = tuple(spec for spec in preset.models if not self.models or spec.label in self.models)
        requested = tuple(self.providers or preset.providers)
        resolved = BenchRequest(preset.name, device, self.out or default_out(device, preset.name),
                                tuple(spec.label for spec in specs), requested, tuple(self.sections or preset.sections))
        return Plan(resolved, preset, specs, applicable_providers(requested, device))


@dataclass(frozen=True)
class RunOptions:
    """How to run a plan (none of it changes what is measured)."""

    resume: bool = option(False, "continue the run in --out, skipping its finished cases")
    time_limit: Optional[float] = option(None, "skip (and list) the cases that would start after this many seconds",
                                         metavar="SECONDS")
    case_timeout: Optional[float] = option(
        None, "a case running longer is recorded as an error and the run goes on (default: 300 s on a machine as "
              "fast as the presets were sized for, longer in proportion on a slower one)", metavar="SECONDS")
    isolate: bool = option(False, "each case in its own process, killed at --case-timeout even inside a hung CUDA "
                                  "call (a process start per case)")
    progress: bool = option(True, "a progress bar (--no-progress: one printed line per case)")
    plots: bool = option(True, "the PNG plots (--no-plots: JSON, CSV and Markdown only)")

    def check(self) -> None:
        for name in ("time_limit", "case_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value}: expected a positive number of seconds")


@dataclass(frozen=True)
class Plan:
    request: BenchRequest  # resolved: every field given
    preset: Preset
    specs: tuple  # the ModelSpecs measured
    providers: tuple  # the requested providers that run on the device

    device = property(lambda self: self.request.device)  # "cpu" or "cuda"
    sections = property(lambda self: self.request.sections)
    out = property(lambda self: self.request.out)  # the results folder

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.preset.dtype) if self.device == "cuda" else torch.float32

    @property
    def kernel_providers(self) -> tuple:
        """The fused-op providers; the last is the one the others' times are quoted against."""
        return tuple(p for p in kernel_cases.PROVIDERS if p in self.providers)

    def cases(self) -> tuple:
        """Every case, in order: setup, the model sections, attention, the fused ops."""
        cases = [SETUP]
        for spec in self.specs:
            for provider in self.providers:
                compiled = bench_providers.split(provider).compiled
                if compiled and spec.label not in self.preset.compile_models:
                    continue
                if "train" in self.sections or "profile" in self.sections:  # the profile runs the timed step
                    cases.append(Case("train", spec, provider))
                if not compiled:  # inference and sampling run eager models (compiling again costs minutes)
                    cases += [Case(section, spec, provider) for section in ("inference", "sampling")
                              if section in self.sections]
        if "profile" in self.sections and self.device == "cuda":
            cases.append(Case("attention", provider="sdpa"))
        if "kernels" in self.sections and self.kernel_providers:
            cases += [Case("kernels", op=op, width=width) for width in self.preset.kernel_widths
                      for op in kernel_cases.CASES]
        return tuple(cases)

    def notes(self) -> list:
        """What the report says about providers that did not run, and why."""
        notes = [f"{provider} not run on {self.device}: {bench_providers.unavailable_reason(provider, self.device)}"
                 for provider in self.request.providers if provider not in self.providers]
        if self.device == "cpu" and "native" in self.providers:
            notes.append("native on a CPU runs the extension's C++ loops, not its CUDA kernels")
        if "kernels" in self.sections and "triton" not in self.kernel_providers:
            notes.append("fused-op microbenchmarks ran without the triton provider (Triton needs a CUDA device)")
        return notes

    def settings(self) -> dict:
        """The resolved request but its folder, as JSON values: what makes two runs the same run
        (recorded in bench.jsonl, checked on --resume; a moved folder still resumes)."""
        settings = json.loads(json.dumps(dataclasses.asdict(self.request)))
        del settings["out"]
        return settings


def default_out(device: str, preset: str) -> str:
    """A folder in the current directory named for the run."""
    return f"bench-{datetime.date.today()}-{device}-{preset}"


def applicable_providers(providers, device: str) -> tuple:
    """The providers the backend table says can run on `device`."""
    return tuple(p for p in providers if bench_providers.unavailable_reason(p, device) is None)
