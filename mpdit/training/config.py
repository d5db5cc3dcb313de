"""TrainConfig: every setting of a training run, each default in one place.

`mpdit train` generates its options from these fields (mpdit.options.add_config_arguments):
the help text and choices live in each field's metadata. Defaults follow the paper's recipe
(docs/model.md, "Training and sampling recipe"): AdamW lr 1e-4 without weight decay,
logit-normal times, class dropout 0.1, EMA 0.9999, bf16 on GPU.
"""
import math
from dataclasses import dataclass, field
from typing import Optional

from mpdit.diffusion.flow import TIME_SAMPLERS
from mpdit.evaluation.inception import find_weights
from mpdit.io.files import require_file
from mpdit.io.npz_images import check_images_header
from mpdit.models.float8 import float8_unavailable_reason
from mpdit.options import check_choices, group, option, required
from mpdit_kernels import BACKEND_NAMES

PRECISIONS = ("auto", "fp32", "bf16", "fp8")
PARALLEL = ("ddp", "fsdp")
ON_NONFINITE = ("stop", "skip")
# torch.compile modes. max-autotune-no-cudagraphs: Inductor times its Triton templates against cuBLAS for every
# matrix product and can fuse an epilogue (fc1's bias + GELU) into one; minutes more compiling. CUDA only: its CPU
# templates failed on these models (torch 2.13, an AssertionError in ir.indexer).
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
AUTOTUNE_ON_CPU = "max-autotune tunes Triton templates for a GPU's matrix products: CUDA only"


@dataclass
class TrainingEvaluation:
    """The evaluation of the EMA during training (options --eval-*): every `every` steps and at the
    end, `samples` images sampled into eval/, evaluated against `ref`, logged as eval_* records."""

    every: int = option(0, "steps between evaluations of the EMA (and one at the end): --eval-samples images sampled "
                           "into eval/, the metrics into metrics.jsonl and TensorBoard; 0 = never")
    ref: Optional[str] = option(None, "the reference batch (mpdit eval --make-ref, or ADM's), or 'digits' for the "
                                      "digits classifier's figures", metavar="REF.npz|digits")
    samples: int = option(10000, "images per evaluation, classes balanced (50000 for the paper's FID-50K)")
    steps: int = option(50, "Euler steps of the evaluation samples")
    cfg_scale: float = option(1.0, "guidance scale of the evaluation samples")
    inception_weights: Optional[str] = option(None, "the Inception weights (see mpdit eval)", metavar="FILE")

    def validate(self, dataset: str) -> None:
        """The settings, and before training the reference and the Inception weights (not found
        at the first evaluation, hours in)."""
        for name, low in (("every", 0), ("samples", 1), ("steps", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"eval_{name}={value!r}: expected an integer >= {low}")
        if self.every and not self.ref:
            raise ValueError(f"eval_every={self.every}: needs eval_ref (--eval-ref REF.npz, or digits)")
        if self.ref and not self.every:
            raise ValueError(f"eval_ref={self.ref!r}: used only with eval_every (--eval-every STEPS)")
        if self.ref == "digits" and dataset != "digits":
            raise ValueError(f"eval_ref='digits': the digits classifier's figures are for dataset='digits', not "
                             f"{dataset!r}")
        if self.every and self.ref != "digits":
            check_images_header(self.ref)
            find_weights(self.inception_weights)


@dataclass
class TrainConfig:
    model: str = required("registered model name", cli=False)  # from the shared --model option
    dataset: str = required("'digits' (scikit-learn's, no download) or a folder of latent shards",
                            metavar="digits|PATH")
    steps: int = required("optimizer steps in all (a resumed run continues up to it)")
    global_batch_size: int = required("images per optimizer step, over all processes")
    run_dir: str = required("folder for checkpoints, metrics.jsonl and sample grids")
    resume: Optional[str] = option(None, "'auto': the latest checkpoint in --run-dir; or a checkpoint path",
                                   metavar="auto|PATH")
    init: Optional[str] = option(None, "start from these weights (model and EMA; optimizer fresh): an engine "
                                       ".safetensors from `mpdit convert` or export-ema, or a checkpoint; a resumed "
                                       "run ignores it", metavar="FILE")
    image_size: int = option(16, "digits: the image side in pixels", choices=(8, 16, 32))
    micro_batch_size: Optional[int] = option(None, "per process; accumulates gradients up to the global batch")
    lr: float = option(1e-4, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(0, "linear learning-rate warm-up")
    grad_clip: float = option(1.0, "gradient-norm clipping; 0 = off (the norm is still computed and checked)")
    ema_decay: float = option(0.9999, "decay of the EMA weights")
    ema_warmup: bool = option(True, "EMA decay min(ema_decay, (1 + step) / (10 + step)): a short run's EMA is "
                                    "usable (0.9999 alone leaves 92%% of the initial weights in it after 800 steps)")
    time_sampler: str = option("logit_normal", "distribution of training times t", choices=TIME_SAMPLERS)
    time_mean: float = option(0.0, "logit-normal mean")
    time_std: float = option(1.0, "logit-normal standard deviation")
    class_dropout: float = option(0.1, "probability of the null label (classifier-free guidance)")
    seed: int = option(0, "initial weights, data order and each step's random draws (times, noise, dropout)")
    compile: bool = option(False, "torch.compile the model")
    compile_mode: str = option("default", "torch.compile's mode with --compile (max-autotune-no-cudagraphs: tuned "
                                          "matrix-product templates, fused epilogues; CUDA; minutes more compiling)",
                               choices=COMPILE_MODES)
    parallel: str = option("ddp", "under torchrun: DDP, or FSDP2 (fully_shard of each block and the model)",
                           choices=PARALLEL)
    kernel_backend: str = option("auto", "who runs the fused ops (mpdit_kernels.backend)", choices=BACKEND_NAMES)
    precision: str = option("auto", "auto = bf16 autocast on GPU, fp32 on CPU; fp8 = bf16 with the blocks' linear "
                                    "layers in float8 (torchao, sm_89+)", choices=PRECISIONS)
    on_nonfinite: str = option("stop", "a non-finite loss or gradient: stop, or skip the step", choices=ON_NONFINITE)
    checkpoint_every: int = option(1000, "steps between checkpoints (and one at the end)")
    keep_checkpoints: int = option(3, "keep the newest K checkpoints, each complete (model, EMA, optimizer); "
                                      "0 = keep all")
    log_every: int = option(10, "steps between metrics records")
    sample_every: int = option(1000, "steps between PNG grids of EMA samples (digits); 0 = never")
    evaluation: TrainingEvaluation = group(TrainingEvaluation, "eval", "the evaluation of the EMA during training")
    num_workers: int = option(2, "DataLoader worker processes")
    overrides: dict = field(default_factory=dict, metadata={"cli": False})  # create_model overrides

    def validate(self) -> None:
        for name in ("steps", "global_batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints={self.keep_checkpoints!r}: expected 0 (keep all) or a positive integer")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size={self.micro_batch_size}: expected a positive integer")
        for name, low, high, what in (("lr", 0.0, None, "a positive learning rate"),
                                      ("grad_clip", 0.0, None, "a positive norm, or 0 = off"),
                                      ("weight_decay", 0.0, None, "a finite number >= 0"),
                                      ("time_std", 0.0, None, "a positive standard deviation"),
                                      ("time_mean", None, None, "a finite number")):
            value = getattr(self, name)
            bad = not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or \
                (low is not None and (value < low or (value == low and name in ("lr", "time_std"))))
            if bad:
                raise ValueError(f"{name}={value!r}: expected {what}")
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay={self.ema_decay!r}: expected a value in [0, 1)")
        if not isinstance(self.warmup_steps, int) or isinstance(self.warmup_steps, bool) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps!r}: expected an integer >= 0")
        for name in ("compile", "ema_warmup"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"compile_mode={self.compile_mode!r}: applies only with compile=True (--compile)")
        for name in ("init", "resume"):  # before anything is created; 'auto' finds its checkpoint in run_dir
            path = getattr(self, name)
            if path is not None and (name, path) != ("resume", "auto"):
                require_file(path, name)
        self.evaluation.validate(self.dataset)
        if not 0.0 <= self.class_dropout <= 1.0:
            raise ValueError(f"class_dropout={self.class_dropout}: expected a probability in [0, 1]")
        check_choices(self)

    def validate_for(self, world) -> None:
        """What depends on the processes and their device (ValueError on every rank alike)."""
        if self.evaluation.every and self.parallel == "fsdp" and world.size > 1:
            raise ValueError("eval_every: evaluating a sharded (FSDP) EMA during training is not supported; use DDP, "
                             "or mpdit sample --eval on its checkpoints")
        if self.compile and self.compile_mode != "default" and world.device.type != "cuda":
            raise ValueError(f"compile_mode={self.compile_mode!r}: {AUTOTUNE_ON_CPU}; got device {world.device}")
        if self.precision == "fp8" and float8_unavailable_reason(world.device):
            raise ValueError(f"precision='fp8' {float8_unavailable_reason(world.device)}")
