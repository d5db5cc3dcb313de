"""What `mpdit bench` runs: presets sized for a machine and a time budget."""
from dataclasses import dataclass, field

from mpdit.bench.model_cases import ModelSpec
from mpdit.audit.paper import UPGRADES

SECTIONS = ("flops", "train", "inference", "sampling", "kernels", "profile")
# profile (torch.profiler over a few training steps, a Chrome trace each) only when asked for
DEFAULT_SECTIONS = SECTIONS[:-1]

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
    sample_batch: int = 1
    sample_steps: tuple = (5,)
    reps: int = 10
    warmup: int = 1
    kernel_widths: tuple = (1152,)
    kernel_batch: int = 256
    sections: tuple = DEFAULT_SECTIONS
    baselines: dict = field(default_factory=dict)  # label -> the label its speed-up is quoted against


PRESETS = {
    "default": Preset(
        name="default",
        description="a few minutes on a 2-core CPU: B-size models, small batches, fp32 (bf16 on a GPU)",
        dtype="bfloat16", models=B_MODELS[:2], providers=("torch", "triton", "native"),  # dtype on a GPU; CPU runs are fp32
        train_batch=1, inference_batches=(1, 2), sample_batch=1, sample_steps=(3,), reps=10, warmup=1,
        kernel_widths=(768,), kernel_batch=32, baselines={"MPDiT-B": "SiT-B/2"}),
    "paper": Preset(
        name="paper",
        description="the GPU set: B and XL models against SiT and DiT + upgrades, batch 256, bf16, every "
                    "provider (its time on one GPU is not measured yet)",
        dtype="bfloat16", models=B_MODELS + XL_MODELS, providers=("torch", "compile", "triton", "triton+compile", "native",
                                                               "triton+compile+fp8"),
        compile_models=("MPDiT-XL", "SiT-XL/2"), train_batch=256, inference_batches=(1, 256), sample_batch=16,
        sample_steps=(50, 250), reps=10, warmup=2, kernel_widths=(768, 1152), kernel_batch=256,
        baselines={"MPDiT-B": "SiT-B/2", "MPDiT-XL": "SiT-XL/2"}),
    "tiny": Preset(
        name="tiny",
        description="a smoke test of every section in seconds (tiny models, 2 repetitions: not for figures)",
        dtype="float32",
        models=(ModelSpec("MPDiT-S/8px", "MPDiT-S", {"latent_size": 8, "stages": ((4, 1), (2, 1))}),
                ModelSpec("SiT-S/2/8px", "SiT-S/2", {"latent_size": 8})),
        providers=("torch", "triton", "native"), train_batch=2, inference_batches=(1, 2), sample_batch=1, sample_steps=(2,),
        reps=2, warmup=1, kernel_widths=(72,), kernel_batch=1, baselines={"MPDiT-S/8px": "SiT-S/2/8px"}),
}
