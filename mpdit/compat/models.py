"""The official DiT, SiT and reference-MPDiT model classes, running on the engine.

Each class takes its codebase's constructor arguments (plus kernel_backend), has exactly its
codebase's state_dict keys and shapes (state_dict hooks translate to and from the engine's
names, mpdit.compat.layouts), and computes what its forward and forward_with_cfg compute:
t fed as given (DiT: steps 0..999; SiT and MPDiT: t in [0, 1], each with its own end for
noise), DiT's learned-sigma channels returned as DiT returns them, guidance on the channels
the official code guides. Underneath is the engine's MultiPatchTransformer: the fused ops
(kernel_backend) and torch.compile apply unchanged.
"""
from functools import partial

import torch
import torch.nn as nn

from mpdit.compat.layouts import from_official, strip_prefixes, to_official
from mpdit.diffusion.flow import drop_labels
from mpdit.models.embeddings import ClassEmbedding
from mpdit.models.registry import SIZES
from mpdit.models.transformer import ModelConfig, MultiPatchTransformer


class OfficialModel(MultiPatchTransformer):
    """The engine's network behind an official interface; subclasses set the family's facts."""

    family = None  # "dit" | "sit" | "mpdit-ref" (mpdit.compat.layouts)
    guided_channels = None  # channels forward_with_cfg guides; None = in_channels

    def __init__(self, config: ModelConfig, kernel_backend: str, class_dropout_prob: float, official_kwargs: dict):
        super().__init__(config, kernel_backend=kernel_backend)
        self.time_range = None  # the official modules take any t
        self.class_dropout_prob = class_dropout_prob
        self.official_kwargs = official_kwargs  # what rebuilds this module (mpdit convert records it)
        if class_dropout_prob == 0 and self.family in ("dit", "sit"):  # DiT: no null row without dropout
            self.y_embedder = ClassEmbedding(config.num_classes, config.hidden_size, config.class_tokens,
                                             null_class=False)
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        self.register_state_dict_post_hook(_state_dict_to_official)
        self.register_load_state_dict_pre_hook(_state_dict_from_official)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The official forward: in train mode labels are dropped to the null class with
        probability class_dropout_prob (DiT's LabelEmbedder); every output channel returned."""
        self.check_inputs(x, t, y)
        if self.training and self.class_dropout_prob > 0:
            y = drop_labels(y, self.class_dropout_prob, self.config.num_classes)
        return self.network(x, t, y)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float) -> torch.Tensor:
        """The official guidance: the first half of x feeds both halves (labels [y ; null] as given);
        the guided channels are written into both halves, the others keep each half's own output."""
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y)
        k = self.guided_channels or self.config.in_channels
        guided, rest = out[:, :k], out[:, k:]
        cond, uncond = torch.split(guided, len(guided) // 2, dim=0)
        mixed = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([mixed, mixed], dim=0), rest], dim=1)


def _own_keys(state_dict: dict, prefix: str) -> dict:
    """Pop and return this module's entries (those under `prefix`), keys without it."""
    keys = [key for key in state_dict if key.startswith(prefix)]
    return {key[len(prefix):]: state_dict.pop(key) for key in keys}


def _state_dict_to_official(module, state_dict, prefix, local_metadata) -> None:
    state_dict.update({prefix + key: tensor for key, tensor in
                       to_official(_own_keys(state_dict, prefix), module.config, module.family).items()})


def _state_dict_from_official(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
    # torch.compile's "_orig_mod." (the reference MPDiT's EMA) is stripped: the same weights.
    own = strip_prefixes(_own_keys(state_dict, prefix))
    state_dict.update({prefix + key: tensor for key, tensor in
                       from_official(own, module.config, module.family).items()})


# --------------------------------------------------------------------------- DiT and SiT
class DiT(OfficialModel):
    """facebookresearch/DiT's DiT: constructor arguments, state_dict and forward as there."""

    family = "dit"
    guided_channels = 3  # "for exact reproducibility" DiT guides 3 of the 4 latent channels

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True, kernel_backend="torch"):
        config = ModelConfig(hidden_size=hidden_size, num_heads=num_heads, stages=((patch_size, depth),),
                             class_tokens=0, time_embed="mlp", shared_adaln=False, learn_sigma=learn_sigma,
                             latent_size=input_size, in_channels=in_channels, num_classes=num_classes,
                             mlp_ratio=mlp_ratio)
        kwargs = dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden_size,
                      depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, class_dropout_prob=class_dropout_prob,
                      num_classes=num_classes, learn_sigma=learn_sigma)
        super().__init__(config, kernel_backend, class_dropout_prob, kwargs)


class SiT(DiT):
    """willisma/SiT's SiT: DiT's network; with learn_sigma its forward returns the first
    in_channels channels only (the velocity), so forward_with_cfg guides velocity channels 0-2."""

    family = "sit"

    def forward(self, x, t, y):
        out = super().forward(x, t, y)
        return out[:, : self.config.in_channels] if self.config.learn_sigma else out


# --------------------------------------------------------------------------- reference MPDiT
class MPDiT(OfficialModel):
    """quandao10/MPDiT's one-level MPDiT (patch_size -> 2). Label dropout is its train.py's job,
    not the model's, so class_dropout_prob is 0 here as there; forward_with_cfg guides every
    velocity channel."""

    family = "mpdit-ref"

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth_downsample=24,
                 depth_upsample=4, num_heads=16, mlp_ratio=4.0, num_classes=1000, joint=False, num_condition_tokens=16,
                 time_emb="fno", skip_connection=True, kernel_backend="torch"):
        kwargs = dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden_size,
                      depth_downsample=depth_downsample, depth_upsample=depth_upsample, num_heads=num_heads,
                      mlp_ratio=mlp_ratio, num_classes=num_classes, joint=joint,
                      num_condition_tokens=num_condition_tokens, time_emb=time_emb, skip_connection=skip_connection)
        stages = ((patch_size, depth_downsample), (2, depth_upsample))  # the fine stage is always patch 2
        super().__init__(_mpdit_config(stages, hidden_size, num_heads, mlp_ratio, input_size, in_channels,
                                       num_classes, joint, num_condition_tokens, time_emb, skip_connection),
                         kernel_backend, 0.0, kwargs)


class MPDiTv2(OfficialModel):
    """quandao10/MPDiT's two-level MPDiTv2 (patch_sizes, e.g. 8 -> 4 -> 2)."""

    family = "mpdit-ref"

    def __init__(self, input_size=32, patch_sizes=(8, 4, 2), in_channels=4, hidden_size=1152, depth_list=(16, 6, 6),
                 num_heads=16, mlp_ratio=4.0, num_classes=1000, joint=False, num_condition_tokens=16, time_emb="fno",
                 skip_connection=True, kernel_backend="torch"):
        kwargs = dict(input_size=input_size, patch_sizes=list(patch_sizes), in_channels=in_channels,
                      hidden_size=hidden_size, depth_list=list(depth_list), num_heads=num_heads, mlp_ratio=mlp_ratio,
                      num_classes=num_classes, joint=joint, num_condition_tokens=num_condition_tokens,
                      time_emb=time_emb, skip_connection=skip_connection)
        if len(patch_sizes) != 3 or len(depth_list) != 3:
            raise ValueError(f"patch_sizes={list(patch_sizes)}, depth_list={list(depth_list)}: expected three levels")
        stages = tuple(zip(patch_sizes, depth_list))
        super().__init__(_mpdit_config(stages, hidden_size, num_heads, mlp_ratio, input_size, in_channels,
                                       num_classes, joint, num_condition_tokens, time_emb, skip_connection),
                         kernel_backend, 0.0, kwargs)


def _mpdit_config(stages, hidden_size, num_heads, mlp_ratio, input_size, in_channels, num_classes, joint,
                  num_condition_tokens, time_emb, skip_connection) -> ModelConfig:
    # joint = 2C output channels: the engine's learn_sigma (a second block of C channels).
    return ModelConfig(hidden_size=hidden_size, num_heads=num_heads, stages=stages,
                       class_tokens=num_condition_tokens, time_embed=time_emb, shared_adaln=True,
                       skip=skip_connection, learn_sigma=joint, latent_size=input_size, in_channels=in_channels,
                       num_classes=num_classes, mlp_ratio=mlp_ratio)


# --------------------------------------------------------------------------- registries
DiT_models = {f"DiT-{size}/{p}": partial(DiT, hidden_size=D, depth=depth, num_heads=heads, patch_size=p)
              for size, (D, heads, depth) in SIZES.items() for p in (2, 4, 8)}
SiT_models = {f"SiT-{size}/{p}": partial(SiT, hidden_size=D, depth=depth, num_heads=heads, patch_size=p)
              for size, (D, heads, depth) in SIZES.items() for p in (2, 4, 8)}
MPDiT_models = {
    "MPDiT-XL/4x": partial(MPDiT, depth_downsample=22, depth_upsample=6, hidden_size=1152, patch_size=4, num_heads=16),
    "MPDiT-L/4x": partial(MPDiT, depth_downsample=18, depth_upsample=6, hidden_size=1024, patch_size=4, num_heads=16),
    "MPDiT-B/4x": partial(MPDiT, depth_downsample=6, depth_upsample=6, hidden_size=768, patch_size=4, num_heads=12),
    "MPDiTv2-XL": partial(MPDiTv2, depth_list=(14, 8, 6), hidden_size=1152, patch_sizes=(8, 4, 2), num_heads=16),
    "MPDiTv2-L": partial(MPDiTv2, depth_list=(14, 6, 4), hidden_size=1024, patch_sizes=(8, 4, 2), num_heads=16),
    "MPDiTv2-B": partial(MPDiTv2, depth_list=(6, 4, 2), hidden_size=768, patch_sizes=(8, 4, 2), num_heads=12),
}
REGISTRIES = {"dit": DiT_models, "sit": SiT_models, "mpdit-ref": MPDiT_models}


def official_model(family: str, name: str, **kwargs) -> OfficialModel:
    """REGISTRIES[family][name](**kwargs), with ValueErrors naming an unknown family or name."""
    if family not in REGISTRIES:
        raise ValueError(f"family={family!r}: expected one of {', '.join(REGISTRIES)}")
    if name not in REGISTRIES[family]:
        raise ValueError(f"model={name!r}: not a {family} model; expected one of {', '.join(REGISTRIES[family])}")
    return REGISTRIES[family][name](**kwargs)
