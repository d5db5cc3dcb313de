"""Named sizes (the registry the CLI's choices come from) and create_model."""
from dataclasses import replace

from mpdit.models.transformer import ModelConfig, MultiPatchTransformer, overridable_fields

# name: (hidden_size, num_heads, depth), as DiT (Peebles & Xie, Table 1) and MPDiT (docs/model.md).
SIZES = {"S": (384, 6, 12), "B": (768, 12, 12), "L": (1024, 16, 24), "XL": (1152, 16, 28)}
MPDIT_FINE_DEPTH = 6


def dit_config(size: str, patch: int) -> ModelConfig:
    """DiT-<size>/<patch>: isotropic, per-block adaLN-Zero, MLP time embedding, learned sigma."""
    D, heads, depth = SIZES[size]
    return ModelConfig(hidden_size=D, num_heads=heads, stages=((patch, depth),), class_tokens=0,
                       time_embed="mlp", shared_adaln=False, learn_sigma=True)


def mpdit_config(size: str, stages=None) -> ModelConfig:
    """MPDiT-<size>: [(4, N - 6), (2, 6)], shared adaLN, 16 class tokens, FNO time, input skip."""
    D, heads, depth = SIZES[size]
    stages = stages or ((4, depth - MPDIT_FINE_DEPTH), (2, MPDIT_FINE_DEPTH))
    return ModelConfig(hidden_size=D, num_heads=heads, stages=stages, class_tokens=16,
                       time_embed="fno", shared_adaln=True, skip=True, learn_sigma=False)


MODELS = {}
for _size in SIZES:
    for _patch in (2, 4, 8):
        MODELS[f"DiT-{_size}/{_patch}"] = dit_config(_size, _patch)
        # SiT is the same network trained with the flow-matching interpolant (Ma et al. 2024).
        MODELS[f"SiT-{_size}/{_patch}"] = dit_config(_size, _patch)
    MODELS[f"MPDiT-{_size}"] = mpdit_config(_size)
# The public code's three-level variant (patches 8 -> 4 -> 2), built from the same upsampler.
MODELS["MPDiT-XL-3L"] = mpdit_config("XL", stages=((8, 14), (4, 8), (2, 6)))

# fine_depth: the last stage's depth, total depth kept (ModelConfig.with_fine_depth)
OVERRIDES = ("fine_depth",) + overridable_fields()


def list_models() -> list:
    """Registered model names."""
    return list(MODELS)


def get_config(name: str, **overrides) -> ModelConfig:
    """The registered config for `name` with overrides applied (fine_depth is applied last)."""
    if name not in MODELS:
        raise ValueError(f"model={name!r}: unknown model; known models: {', '.join(MODELS)}")
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown override for create_model; expected one of {', '.join(OVERRIDES)}")
    fine_depth = overrides.pop("fine_depth", None)
    if "stages" in overrides:
        try:
            overrides["stages"] = tuple(tuple(stage) for stage in overrides["stages"])
        except TypeError:
            raise ValueError(f"stages={overrides['stages']!r}: expected a list of (patch, depth) pairs") from None
    config = replace(MODELS[name], **overrides)
    if fine_depth is not None:
        config = config.with_fine_depth(fine_depth)
    config.validate()
    return config


def create_model(name: str, kernel_backend: str = "torch", **overrides) -> MultiPatchTransformer:
    """Build a registered model, e.g. create_model("MPDiT-XL", fine_depth=8) or
    create_model("DiT-B/2", shared_adaln=True, class_tokens=16, time_embed="fno").

    kernel_backend: "torch" (plain PyTorch), "triton" (fused Triton kernels), "native" (the C++/CUDA
    extension) or "auto" (triton, else native, on CUDA tensors; torch elsewhere); the weights and
    the function are the same (mpdit_kernels.backend).
    """
    return MultiPatchTransformer(get_config(name, **overrides), kernel_backend=kernel_backend)
