"""SampleSettings: every setting of `mpdit sample`, each default in one place; the command's
options are generated from these fields (mpdit.options)."""
from dataclasses import dataclass
from typing import Optional

from mpdit.diffusion.guidance import check_guidance
from mpdit.inference.methods import METHODS
from mpdit.options import check_choices, int_list, option, required


@dataclass(frozen=True)
class SampleSettings:
    out: str = required("the images (arr_0, uint8 NHWC, the ADM evaluator's layout) and labels; a PNG grid is "
                        "written beside it", metavar="FILE.npz")
    classes: Optional[tuple] = option(None, "comma-separated labels (default: 10 random ones with --per-class, every "
                                            "class with --num-samples)", type=int_list)
    per_class: Optional[int] = option(None, "K samples of each class in --classes (default 1)", metavar="K")
    num_samples: Optional[int] = option(None, "exactly N samples (e.g. 50000 for FID-50K), classes balanced: N // C "
                                              "of each of the C classes and one more of the first N %% C; instead of "
                                              "--per-class", metavar="N")
    random_classes: bool = option(False, "with --num-samples: each image's class drawn uniformly (DiT's "
                                         "sample_ddp.py)")
    resume: bool = option(False, "continue a killed run from the shards in FILE.shards/ (the same settings)")
    eval_ref: Optional[str] = option(None, "evaluate the result against this reference batch (mpdit eval) and write "
                                           "FILE.metrics.json", metavar="REF.npz", flag="--eval")
    inception_weights: Optional[str] = option(None, "--eval: the Inception weights (see mpdit eval)", metavar="FILE")
    progress: bool = option(True, "a progress bar")
    batch_size: int = option(64, "samples per model call (per process)")
    cfg_scale: float = option(1.0, "classifier-free guidance scale w; 1 = none")
    steps: int = option(50, "sampler steps (ddpm: respaced steps)")
    method: Optional[str] = option(None, "default: euler; ddpm (DiT's sampler, --steps respaced steps, e.g. 250) for "
                                         "a file converted from DiT", choices=METHODS)
    guidance_low: float = option(0.0, "guide only for t >= this")
    guidance_high: float = option(1.0, "guide only for t <= this")
    seed: int = option(0, "image i depends on (seed, i) only, not on the batch size or the number of processes (the "
                          "SDE sampler's later noise: also on the batch)")
    ema: bool = option(True, "the EMA weights (--no-ema: the raw weights)")
    cuda_graph: bool = option(False, "euler / heun: replay each model evaluation from a CUDA graph (GPU only)")
    vae: Optional[str] = option(None, "latent runs: decode with this VAE (default: the one in latents.json)")
    latents_only: bool = option(False, "latent runs: keep the samples as latents (`latents`, float32 N x C x H x W, "
                                       "with labels; no VAE, no grid), to decode later with mpdit.decode")

    @property
    def guidance_interval(self) -> tuple:
        return (self.guidance_low, self.guidance_high)

    def check(self) -> None:
        """What can be refused before anything is loaded (ValueError naming the setting)."""
        check_choices(self)  # the method among them
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: expected a positive integer")
        check_guidance(self.cfg_scale, None, self.guidance_interval)  # a NaN scale would sample all black
        if self.latents_only and self.eval_ref:
            raise ValueError("--latents-only with --eval: the evaluator reads images; decode the latents first")

    def recipe(self, method: str, vae) -> dict:
        """How the images are drawn, as recorded with the shards (a resume continues only the same)."""
        return {"method": method, "steps": self.steps, "cfg_scale": self.cfg_scale,
                "guidance_interval": list(self.guidance_interval), "seed": self.seed, "vae": vae,
                **({"latents_only": True} if self.latents_only else {})}  # shards of earlier runs resume as before
