"""What `mpdit bench` runs: presets sized for a machine and a time budget."""
from dataclasses import dataclass, field, replace

from mpdit.audit.paper import UPGRADES

SECTIONS = ("flops", "train", "inference", "sampling", "kernels", "profile")
# profile (torch.profiler over a few training steps, a Chrome trace each) only when asked for
DEFAULT_SECTIONS = SECTIONS[:-1]


@dataclass(frozen=True)
class ModelSpec:
    """A model as the bench names it: a registered name and its overrides."""

    label: str
    name: str
    overrides: dict = field(default_factory=dict)


B_MODELS = (ModelSpec("MPDiT-B", "MPDiT-B"), ModelSpec("SiT-B/2", "SiT-B/2"),
            ModelSpec("DiT-B/2 + upgrades", "DiT-B/2", UPGRADES))
XL_MODELS = (ModelSpec("MPDiT-XL", "MPDiT-XL"), ModelSpec("SiT-XL/2", "SiT-XL/2"),
             ModelSpec("DiT-XL/2 + upgrades", "DiT-XL/2", UPGRADES))


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    dtype: str
    models: tuple
    providers: tuple  # those that do not apply on the device are dropped at run time
    compile_models: tuple = ()  # labels that also run the compile providers (compiling costs minutes)
    train_batch: int = 4
    inference_batches: tuple = (1, 4)
    sample_batches: tuple = (1,)  # guided sampling is timed at each (a CUDA graph captured per size)
    sample_steps: tuple = (5,)
    reps: int = 10
    warmup: int = 1
    kernel_widths: tuple = (1152,)
    kernel_batch: int = 256
    sections: tuple = DEFAULT_SECTIONS
    baselines: dict = field(default_factory=dict)  # label -> the label its speed-up is quoted against


DEFAULT = Preset(
    name="default",
    description="a few minutes on a 2-core CPU: B-size models, small batches, fp32 (bf16 on a GPU)",
    dtype="bfloat16", models=B_MODELS[:2], providers=("torch", "triton", "native"),  # dtype on a GPU; CPU runs are fp32
    train_batch=1, inference_batches=(1, 2), sample_batches=(1,), sample_steps=(3,), reps=10, warmup=1,
    kernel_widths=(768,), kernel_batch=32, baselines={"MPDiT-B": "SiT-B/2"})
PAPER = Preset(
    name="paper",
    description="the GPU set: B and XL models against SiT and DiT + upgrades, batch 256, bf16, every provider; "
                "longer than 10 minutes on one GPU (the parts timed on an H200, MPDiT-XL's training on five providers, "
                "SiT-XL/2's on two and the fused ops, took about 9 with profiles): the paper-* slices each aim at 10 "
                "(not timed on a GPU yet)",
    dtype="bfloat16", models=B_MODELS + XL_MODELS,
    providers=("torch", "compile", "triton", "triton+compile", "native", "compile+fp8", "triton+compile+fp8"),
    compile_models=("MPDiT-XL", "SiT-XL/2"), train_batch=256, inference_batches=(1, 256), sample_batches=(1, 16),
    sample_steps=(50, 250), reps=10, warmup=2, kernel_widths=(768, 1152), kernel_batch=256,
    baselines={"MPDiT-B": "SiT-B/2", "MPDiT-XL": "SiT-XL/2"})
# The paper preset in slices that each aim at 10 minutes on one H100 / H200 (not timed there yet).
PAPER_SLICES = (
    replace(PAPER, name="paper-train",
            description="paper's training step for MPDiT-XL and SiT-XL/2, eager and compiled (torch, compile, triton, "
                        "triton+compile; fp8 on request: --providers compile+fp8,triton+compile+fp8), with the FLOP "
                        "audit",
            models=XL_MODELS[:2], providers=("torch", "compile", "triton", "triton+compile"),
            sections=("flops", "train"), baselines={"MPDiT-XL": "SiT-XL/2"}),
    replace(PAPER, name="paper-sample",
            description="paper's inference (batch 1 and 256) and 50- and 250-step guided sampling (batch 1 and 16, "
                        "eager and CUDA graph) of the XL models, eager providers",
            models=XL_MODELS, providers=("torch", "triton", "native"), sections=("flops", "inference", "sampling"),
            baselines={"MPDiT-XL": "SiT-XL/2"}),
    replace(PAPER, name="paper-kernels",
            description="paper's fused-op microbenchmarks at D = 768 and 1152, batch 256, against the device copy",
            models=XL_MODELS[:1], providers=("torch", "compile", "triton", "native"), sections=("kernels",)),
)
TINY = Preset(
    name="tiny",
    description="a smoke test of every section in seconds (tiny models, 2 repetitions: not for figures)",
    dtype="float32",
    models=(ModelSpec("MPDiT-S/8px", "MPDiT-S", {"latent_size": 8, "stages": ((4, 1), (2, 1))}),
            ModelSpec("SiT-S/2/8px", "SiT-S/2", {"latent_size": 8})),
    providers=("torch", "triton", "native"), train_batch=2, inference_batches=(1, 2), sample_batches=(1, 2),
    sample_steps=(2,), reps=2, warmup=1, kernel_widths=(72,), kernel_batch=1, baselines={"MPDiT-S/8px": "SiT-S/2/8px"})
PRESETS = {preset.name: preset for preset in (DEFAULT, PAPER, *PAPER_SLICES, TINY)}
