"""State dicts between the official layouts (DiT, SiT, the reference MPDiT) and the engine's.

The layouts are described in docs/checkpoint-layouts.md. DiT and SiT name every tensor as the engine
does; only the position table differs ([1, L, D] there, [L, D] here). The reference MPDiT names
its modules after its stages (downsample_blocks, upsampler, x_embedder_skip, ...) and keeps its
FNO time embedding as per-layer tensors that the engine stacks into one. Both directions are pure
renames, reshapes and stacks, so a round trip is bit-exact.
"""
import torch

from mpdit.io.layout import check_state_dict

FAMILIES = ("dit", "sit", "mpdit-ref")
FNO_LAYERS = 3  # the reference's conv0..2 / w0..2


def _pos_keys(config) -> list:
    """The engine's position tables, coarse to fine."""
    return ["pos_embed"] + [f"stage_pos_embeds.{i}" for i in range(len(config.stages) - 1)]


def module_renames(config, family: str) -> dict:
    """{engine module prefix: official prefix} for the modules whose names differ."""
    if family in ("dit", "sit"):
        return {}
    levels = len(config.stages)
    if levels == 2:  # MPDiT: coarse table pos_embed_downsampled, fine table pos_embed
        renames = {"pos_embed": "pos_embed_downsampled", "stage_pos_embeds.0": "pos_embed",
                   "skip_embedders.0.0": "x_embedder_skip", "skip_embedders.0.1": "linear_skip",
                   "upsamplers.0.expand": "upsampler.proj", "upsamplers.0.refine": "upsampler.refine"}
        stage_blocks = ["downsample_blocks", "upsample_blocks"]
    else:  # MPDiTv2: pos_embed (coarsest), pos_embed_lvl1, pos_embed_lvl2, ...
        renames = {}
        for level in range(1, levels):
            renames[f"stage_pos_embeds.{level - 1}"] = f"pos_embed_lvl{level}"
            renames[f"skip_embedders.{level - 1}.0"] = f"x_embedder_lvl{level}"
            renames[f"skip_embedders.{level - 1}.1"] = f"linear_skip_lvl{level}"
            renames[f"upsamplers.{level - 1}.expand"] = f"upsampler_lvl{level}.proj"
            renames[f"upsamplers.{level - 1}.refine"] = f"upsampler_lvl{level}.refine"
        stage_blocks = ["downsample_blocks"] + [f"upsample_blocks_lvl{level}" for level in range(1, levels)]
    first = 0
    for name, (_, depth) in zip(stage_blocks, config.stages):
        renames.update({f"blocks.{first + i}": f"{name}.{i}" for i in range(depth)})
        first += depth
    renames.update({"adaLN_modulation": "time_modulation", "t_embedder.lift": "t_embedder.fc0",
                    "t_embedder.proj": "t_embedder.fc1"})
    return renames


def _rename(key: str, renames: dict) -> str:
    """key with its longest renamed module prefix replaced (whole path components only)."""
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in renames:
            return ".".join([renames[prefix], *parts[cut:]])
    return key


def to_official(native: dict, config, family: str) -> dict:
    """The engine's state dict (unprefixed keys) in `family`'s layout."""
    renames = module_renames(config, family)
    pos = set(_pos_keys(config))
    out = {}
    for key, tensor in native.items():
        if key == "t_embedder.spectral_weight":  # (layers, in, out, modes, 2) -> convK.weights_real / _imag
            for k in range(tensor.shape[0]):
                out[f"t_embedder.conv{k}.weights_real"] = tensor[k, ..., 0]
                out[f"t_embedder.conv{k}.weights_imag"] = tensor[k, ..., 1]
        elif key == "t_embedder.pointwise_weight":  # (layers, out, in) -> wK.weight, a 1x1 Conv1d (out, in, 1)
            for k in range(tensor.shape[0]):
                out[f"t_embedder.w{k}.weight"] = tensor[k].unsqueeze(-1)
        elif key == "t_embedder.pointwise_bias":
            for k in range(tensor.shape[0]):
                out[f"t_embedder.w{k}.bias"] = tensor[k]
        else:
            out[_rename(key, renames)] = tensor.unsqueeze(0) if key in pos else tensor
    return out


def from_official(official: dict, config, family: str) -> dict:
    """`family`'s state dict (unprefixed keys) in the engine's layout. Keys it does not know
    pass through unchanged, so a strict load names them."""
    inverse = {official: native for native, official in module_renames(config, family).items()}
    pos = set(_pos_keys(config))
    out, fno = {}, {}
    for key, tensor in official.items():
        if key.startswith(("t_embedder.conv", "t_embedder.w")) and family == "mpdit-ref":
            fno[key] = tensor
            continue
        native_key = _rename(key, inverse)
        out[native_key] = tensor.squeeze(0) if native_key in pos and tensor.dim() == 3 else tensor
    if fno:
        out.update(_stack_fno(fno))
    return out


def _stack_fno(fno: dict) -> dict:
    """The reference's per-layer FNO tensors as the engine's stacked ones; an incomplete set
    passes through unchanged (a strict load then names what is missing)."""
    names = [f"t_embedder.conv{k}.weights_{part}" for k in range(FNO_LAYERS) for part in ("real", "imag")] + \
        [f"t_embedder.w{k}.{part}" for k in range(FNO_LAYERS) for part in ("weight", "bias")]
    if set(fno) != set(names):
        return fno
    try:
        return {
            "t_embedder.spectral_weight": torch.stack([
                torch.stack([fno[f"t_embedder.conv{k}.weights_real"], fno[f"t_embedder.conv{k}.weights_imag"]], -1)
                for k in range(FNO_LAYERS)]),
            "t_embedder.pointwise_weight": torch.stack([fno[f"t_embedder.w{k}.weight"].squeeze(-1)
                                                        for k in range(FNO_LAYERS)]),
            "t_embedder.pointwise_bias": torch.stack([fno[f"t_embedder.w{k}.bias"] for k in range(FNO_LAYERS)]),
        }
    except RuntimeError:  # shapes that do not stack: leave them for the shape check to name
        return fno


def strip_prefixes(state: dict) -> dict:
    """Keys without the wrappers' prefixes: torch.compile's '_orig_mod.' and DDP's 'module.'."""
    out = {}
    for key, tensor in state.items():
        while key.startswith(("_orig_mod.", "module.")):
            key = key.split(".", 1)[1]
        out[key] = tensor
    return out


def guess_family(state: dict) -> str:
    """Which layout a state dict looks like: 'mpdit-ref', 'dit/sit' (the same keys), 'engine' or 'unknown'."""
    keys = set(state)
    if "downsample_blocks.0.attn.qkv.weight" in keys or "time_modulation.1.weight" in keys:
        return "mpdit-ref"
    engine_keys = ("upsamplers.0.expand.weight", "t_embedder.spectral_weight", "adaLN_modulation.1.weight")
    if any(key in keys for key in engine_keys) or ("pos_embed" in keys and state["pos_embed"].dim() == 2):
        return "engine"  # (the engine's DiT has DiT's keys, but a [L, D] position table)
    if "blocks.0.adaLN_modulation.1.weight" in keys:
        return "dit/sit"
    return "unknown"


def check_layout(given: dict, expected: dict, family: str, what: str = "checkpoint") -> None:
    """ValueError naming the first missing or unexpected key or shape mismatch between a state
    dict and the expected {key: shape} of the official model."""
    family_hint = ""
    seen = guess_family(given)
    same = seen == family or (seen == "dit/sit" and family in ("dit", "sit", "engine"))  # DiT's keys are the engine's
    if seen != "unknown" and not same:
        family_hint = f" (its keys are those of a {seen} checkpoint, not {family})"
    check_state_dict(given, expected, what, family_hint)
