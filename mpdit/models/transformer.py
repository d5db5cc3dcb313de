"""The multi-patch transformer: one class for MPDiT and its DiT/SiT baselines.

A model is a list of stages, coarse to fine, each (patch, depth). One stage with per-block
adaLN, an MLP time embedding and no class tokens is DiT; two stages [(4, N - k), (2, k)]
with shared adaLN, 16 class tokens and the FNO time embedding is MPDiT. docs/model.md
specifies the method; the step numbers below refer to it.
"""
import math
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn as nn

from mpdit.models.blocks import Branch, Condition, FinalLayer, TransformerBlock, Upsample, adaln_projection
from mpdit.models.embeddings import ClassEmbedding, FNOTimeEmbedding, MLPTimeEmbedding, PatchEmbed, sincos_pos_embed_2d
from mpdit_kernels import ops
from mpdit_kernels.backend import Backend, get_backend

TIME_EMBEDDINGS = ("mlp", "fno")


# --------------------------------------------------------------------------- config
def overridable(default, help=None, **cli):
    """A field a run may change from the registered size (create_model(name, **overrides)); with
    `help`, the command line offers it as an option too (mpdit.cli; `cli` adds metavar, choices)."""
    return field(default=default, metadata={"override": True, "help": help, **cli})


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a network; sizes in the registry are instances of this."""

    hidden_size: int
    num_heads: int
    stages: tuple = overridable(((2, 12),), "stage schedule, coarse to fine", metavar="P:D,...")  # ((patch, depth),)
    class_tokens: int = overridable(0, "class tokens m (0 = DiT's single class vector added to the time embedding)",
                                    metavar="M")
    time_embed: str = overridable("mlp", "time embedding: mlp (DiT) or fno (MPDiT)", choices=TIME_EMBEDDINGS)
    shared_adaln: bool = overridable(False, "one adaLN modulation for the whole network (MPDiT)")
    skip: bool = overridable(True, "patch embedding of the input added at each finer stage (MPDiT)")
    learn_sigma: bool = overridable(False)  # DiT's extra C variance channels (unused by flow matching)
    latent_size: int = overridable(32, "latent height = width (32 at 256 px)", metavar="S")
    in_channels: int = overridable(4)  # set by the data
    num_classes: int = overridable(1000)  # set by the data
    mlp_ratio: float = overridable(4.0)

    @property
    def depth(self) -> int:
        return sum(depth for _, depth in self.stages)

    @property
    def fine_depth(self) -> int:
        return self.stages[-1][1]

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    def with_fine_depth(self, fine_depth: int) -> "ModelConfig":
        """The same network with `fine_depth` blocks in the last stage, total depth kept.

        On an isotropic (one-stage) model this splits it MPDiT-style into
        [(2p, N - k), (p, k)]; on a staged model the stage before the last gives or takes
        the blocks.
        """
        N = self.depth
        if not isinstance(fine_depth, int) or isinstance(fine_depth, bool) or not 1 <= fine_depth <= N:
            raise ValueError(f"fine_depth={fine_depth!r}: expected an integer in [1, {N}] (the model has {N} blocks)")
        if len(self.stages) == 1:
            patch = self.stages[0][0]
            stages = ((patch, N),) if fine_depth == N else ((2 * patch, N - fine_depth), (patch, fine_depth))
            return replace(self, stages=stages)
        *head, (prev_patch, prev_depth), (patch, depth) = self.stages
        prev_depth -= fine_depth - depth
        if prev_depth < 1:
            raise ValueError(f"fine_depth={fine_depth}: leaves {prev_depth} blocks in stage {len(head)} of "
                             f"{list(self.stages)}; expected a fine depth that leaves it at least 1")
        return replace(self, stages=(*head, (prev_patch, prev_depth), (patch, fine_depth)))

    def validate(self) -> None:
        """Raise ValueError for a configuration no network can be built from."""
        def positive_int(name, value):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")

        for name in ("hidden_size", "num_heads", "latent_size", "in_channels", "num_classes"):
            positive_int(name, getattr(self, name))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size}: expected a multiple of num_heads={self.num_heads}")
        if not isinstance(self.class_tokens, int) or self.class_tokens < 0:
            raise ValueError(f"class_tokens={self.class_tokens!r}: expected an integer >= 0")
        if self.time_embed not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embed={self.time_embed!r}: expected one of {TIME_EMBEDDINGS}")
        for name in ("shared_adaln", "skip", "learn_sigma"):  # "no" would be truthy: only a bool is a bool
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        ratio = self.mlp_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"mlp_ratio={ratio!r}: expected a positive finite number")
        if not self.stages:
            raise ValueError("stages=(): expected at least one (patch, depth) stage")
        for i, stage in enumerate(self.stages):
            if len(stage) != 2:
                raise ValueError(f"stages[{i}]={stage!r}: expected a (patch, depth) pair")
            positive_int(f"stages[{i}] patch", stage[0])
            positive_int(f"stages[{i}] depth", stage[1])
        for i, ((coarse, _), (fine, _)) in enumerate(zip(self.stages, self.stages[1:])):
            if coarse <= fine or coarse % fine:
                raise ValueError(f"stages={list(self.stages)}: stage {i + 1} patch {fine} must divide the "
                                 f"coarser patch {coarse} before it and be smaller (coarse to fine)")
        coarsest = self.stages[0][0]
        if self.latent_size % coarsest:
            raise ValueError(f"latent_size={self.latent_size}: expected a multiple of the coarsest patch {coarsest}")


def overridable_fields() -> tuple:
    """The ModelConfig fields a run may change from the registered size."""
    return tuple(spec.name for spec in fields(ModelConfig) if spec.metadata.get("override"))


# --------------------------------------------------------------------------- model
class MultiPatchTransformer(nn.Module):
    """Class-conditional velocity network v(x, t, y) over stages of shrinking patches."""

    def __init__(self, config: ModelConfig, kernel_backend: str = "torch"):
        super().__init__()
        config.validate()
        self.config = config
        # "torch" | "triton" | "native" | "auto": who runs the glue between the GEMMs (mpdit_kernels.backend).
        backend = self.backend = get_backend(kernel_backend)
        D, m = config.hidden_size, config.class_tokens
        patches = [patch for patch, _ in config.stages]
        grids = [config.latent_size // p for p in patches]
        # When False, forward checks only shapes (no device sync): for callers that
        # validated their data already, such as the trainer and the benchmarks.
        self.check_values = True
        # The times forward accepts; None = any (the official DiT/SiT layouts, mpdit.compat).
        self.time_range = (0.0, 1.0)

        # Step 1: coarse patch embedding + fixed position table (a frozen Parameter, as DiT).
        self.x_embedder = PatchEmbed(patches[0], config.in_channels, D)
        self.pos_embed = nn.Parameter(sincos_pos_embed_2d(grids[0], grids[0], D), requires_grad=False)
        # Steps 2-3: class and time embeddings.
        self.t_embedder = FNOTimeEmbedding(D, backend=backend) if config.time_embed == "fno" else MLPTimeEmbedding(D)
        self.y_embedder = ClassEmbedding(config.num_classes, D, m)
        # Step 4: one shared modulation, or (DiT) one per block inside the blocks.
        self.adaLN_modulation = adaln_projection(D, 6) if config.shared_adaln else None
        # Steps 5, 6, 9: the blocks of every stage, in one flat list (DiT's names).
        self.blocks = nn.ModuleList(
            TransformerBlock(D, config.num_heads, config.mlp_ratio, own_adaln=not config.shared_adaln, backend=backend)
            for _ in range(config.depth))
        # Steps 7-8: one upsampler, skip embedding and position table per finer stage.
        self.upsamplers = nn.ModuleList(Upsample(D, c // f, backend=backend) for c, f in zip(patches, patches[1:]))
        self.skip_embedders = nn.ModuleList(
            nn.Sequential(PatchEmbed(p, config.in_channels, D), nn.Linear(D, D)) for p in patches[1:]
        ) if config.skip else None
        self.stage_pos_embeds = nn.ParameterList(
            nn.Parameter(sincos_pos_embed_2d(g, g, D), requires_grad=False) for g in grids[1:])
        # Step 10.
        self.final_layer = FinalLayer(D, patches[-1], config.out_channels, own_adaln=not config.shared_adaln,
                                      backend=backend)
        self.initialize_weights()

    @property
    def kernel_backend(self) -> str:
        return self.backend.name

    @kernel_backend.setter
    def kernel_backend(self, name: str) -> None:
        """Switch every module to another backend (same weights, same function)."""
        backend = get_backend(name)
        for module in self.modules():
            if isinstance(vars(module).get("backend"), Backend):
                module.backend = backend

    def initialize_weights(self) -> None:
        """DiT's initialisation: xavier linears, zero biases, adaLN-Zero, zero output layer."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        patch_embeds = [self.x_embedder] + ([s[0] for s in self.skip_embedders] if self.skip_embedders else [])
        for embed in patch_embeds:  # a patch conv is a linear layer on flattened patches
            nn.init.xavier_uniform_(embed.proj.weight.view(embed.proj.weight.shape[0], -1))
            nn.init.zeros_(embed.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        if isinstance(self.t_embedder, MLPTimeEmbedding):
            nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        adalns = [self.adaLN_modulation] + [b.adaLN_modulation for b in self.blocks]
        adalns.append(self.final_layer.adaLN_modulation)
        for adaln in filter(None, adalns):
            nn.init.zeros_(adaln[-1].weight)
            nn.init.zeros_(adaln[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # ----------------------------------------------------------------------- input checks
    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        """ValueError naming the argument for any input the network cannot take."""
        cfg = self.config
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x: expected a (B, C, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        B, C, H, W = x.shape
        if B == 0:
            raise ValueError(f"x: an empty batch (shape {tuple(x.shape)}); expected at least one sample")
        if C != cfg.in_channels:
            raise ValueError(f"x: got {C} channels (shape {tuple(x.shape)}), expected in_channels={cfg.in_channels}")
        coarsest = cfg.stages[0][0]
        if H % coarsest or W % coarsest:
            raise ValueError(f"x: spatial size {H}x{W} is not divisible by the coarsest patch {coarsest}")
        if not x.is_floating_point():
            raise ValueError(f"x: expected a floating-point tensor, got {x.dtype}")
        if not isinstance(t, torch.Tensor) or t.shape != (B,):
            raise ValueError(f"t: expected shape ({B},) (one time per sample), got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
        if not isinstance(y, torch.Tensor) or y.shape != (B,):
            raise ValueError(f"y: expected shape ({B},) (one label per sample), got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"y: expected integer class labels, got {y.dtype}")
        if not self.check_values or torch.compiler.is_compiling() or x.device.type == "meta":
            return
        if x.is_cuda and torch.cuda.is_current_stream_capturing():  # a CUDA graph: no host sync (checked in warm-up)
            return
        low, high = self.time_range or (None, None)
        if low is not None and ((t < low) | (t > high) | t.isnan()).any():
            raise ValueError(f"t: expected times in [{low:g}, {high:g}], got values in "
                             f"[{t.min().item()}, {t.max().item()}]")
        top = self.y_embedder.embedding_table.num_embeddings - 1  # num_classes: the null class, where there is one
        if ((y < 0) | (y > top)).any():
            null = f" ({top} = null class)" if top == cfg.num_classes else ""
            raise ValueError(f"y: expected labels in [0, {top}]{null}, "
                             f"got values in [{y.min().item()}, {y.max().item()}]")

    # ----------------------------------------------------------------------- forward
    def position_table(self, stage: int, grid_h: int, grid_w: int) -> torch.Tensor:
        """The stored table for the built latent size, else one made for this grid."""
        stored = self.pos_embed if stage == 0 else self.stage_pos_embeds[stage - 1]
        if stored.shape[0] == grid_h * grid_w and grid_h == grid_w:
            return stored
        return sincos_pos_embed_2d(grid_h, grid_w, self.config.hidden_size).to(stored.device)

    def unpatchify(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B, H/p * W/p, p*p*C) -> (B, C, H, W), DiT's patch layout."""
        p = self.config.stages[-1][0]
        B = x.shape[0]
        x = x.reshape(B, H // p, W // p, p, p, -1)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(B, -1, H, W)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), t (B,) in [0, 1] with t = 1 noise, y (B,) int in [0, num_classes] -> velocity
        (B, C, H, W)."""
        self.check_inputs(x, t, y)
        return self.network(x, t, y)[:, : self.config.in_channels]  # flow matching: the velocity channels, as SiT

    def network(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The network's whole output (B, out_channels, H, W), learned-sigma channels included; no input checks."""
        cfg = self.config
        m = cfg.class_tokens
        B, _, H, W = x.shape
        if y.dtype not in (torch.int32, torch.int64):  # uint8 / int16 labels: the embedding takes int32 / int64
            y = y.long()
        patches = [patch for patch, _ in cfg.stages]

        c = self.t_embedder(t).to(x.dtype)  # (B, D)
        class_emb = self.y_embedder(y)  # (B, max(m, 1), D)
        if m == 0:
            c = c + class_emb[:, 0]  # DiT: one class vector added to the time embedding
        # Shared adaLN: the six vectors of every block, computed once; DiT blocks project c themselves.
        shared = self.adaLN_modulation(c).view(B, 6, -1) if self.adaLN_modulation is not None else None
        cond = Condition(c, shared)

        grid_h, grid_w = H // patches[0], W // patches[0]
        tokens = self.x_embedder(x) + self.position_table(0, grid_h, grid_w)  # (B, h*w, D)
        if m:
            tokens = torch.cat([class_emb.to(tokens.dtype), tokens], dim=1)  # (B, m + h*w, D)

        block_iter = iter(self.blocks)
        branch = None  # the last block's MLP branch, handed on (blocks.Branch)
        for stage, (patch, depth) in enumerate(cfg.stages):
            if stage:
                tokens = branch.add_to(tokens)  # no LayerNorm follows here to fuse the add into
                branch = None
                refined = self.upsamplers[stage - 1](tokens, m, grid_h, grid_w)  # (B, m + h'*w', D)
                grid_h, grid_w = H // patch, W // patch
                skip = self.skip_embedders[stage - 1](x) if self.skip_embedders is not None else None
                tokens = ops.fine_entry(refined, skip, self.position_table(stage, grid_h, grid_w), self.backend)
            for _ in range(depth):
                tokens, branch = next(block_iter)(tokens, cond, branch)

        image_branch = Branch(branch.output[:, m:], branch.gate)
        out = self.final_layer(tokens[:, m:], cond, image_branch)  # (B, h*w, p*p*out_channels)
        return self.unpatchify(out, H, W)  # (B, out_channels, H, W)
