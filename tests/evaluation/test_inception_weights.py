"""NVIDIA's TorchScript Inception files read by name into the engine's network: a TorchScript
archive built here with the 2015 graph's tensor names (random values), with and without the
logits head, and what a file lacking a tensor is told."""
import pytest
import torch
import torch.nn as nn

from mpdit.evaluation.inception import InceptionV3, load_inception
from mpdit.evaluation.inception_weights import BATCH_NORM, NVIDIA_TORCHSCRIPT, TORCH_FIDELITY, graph_names


class _Node(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def graph_file(path, engine: dict, head: bool = True, drop: str = None) -> str:
    """A TorchScript archive holding `engine`'s convolutions under the graph's names (under
    `layers.`, as StyleGAN3's file), batch norm without gamma, and the head as `output.weight`."""
    root = _Node()
    tensors = {}
    for graph, name in graph_names().items():
        tensors[f"layers.{graph}.weight"] = engine[f"{name}.conv.weight"]
        for graph_field, engine_field in BATCH_NORM.items():
            tensors[f"layers.{graph}.{graph_field}"] = engine[f"{name}.{engine_field}"]
    if head:
        tensors["output.weight"] = engine["fc.weight"]
    tensors.pop(drop, None)
    for key, tensor in tensors.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, _Node())
            module = getattr(module, part)
        module.register_buffer(leaf, tensor.clone())
    torch.jit.save(torch.jit.script(root), str(path))
    return str(path)


def random_engine_state() -> dict:
    torch.manual_seed(0)
    state = InceptionV3().state_dict()
    return {key: torch.randn_like(value) if value.is_floating_point() else value for key, value in state.items()}


def test_every_convolution_maps_one_to_one():
    names = graph_names()
    assert len(names) == 94 and len(set(names.values())) == 94
    engine = {key.rsplit(".conv.weight", 1)[0] for key in InceptionV3().state_dict() if key.endswith(".conv.weight")}
    assert set(names.values()) == engine


def test_a_torchscript_file_with_the_head_loads_every_tensor_by_name(tmp_path):
    engine = random_engine_state()
    network = load_inception(graph_file(tmp_path / "inception-2015-12-05.pt", engine))
    assert (network.weight_kind, network.has_logits) == (NVIDIA_TORCHSCRIPT, True)
    loaded = network.state_dict()
    for key, tensor in engine.items():
        if key.endswith("bn.weight"):  # the graph has no gamma: scale 1
            assert torch.equal(loaded[key], torch.ones_like(tensor)), key
        elif not key.endswith(("num_batches_tracked", "fc.bias")):
            assert torch.equal(loaded[key], tensor), key


def test_a_features_only_file_has_no_logits_and_a_missing_tensor_is_named(tmp_path):
    engine = random_engine_state()
    network = load_inception(graph_file(tmp_path / "default_1.pt", engine, head=False))
    assert not network.has_logits
    assert network(torch.zeros(1, 3, 75, 75, dtype=torch.uint8) + 9)["logits"].shape == (1, 0)
    broken = graph_file(tmp_path / "broken.pt", engine, drop="layers.mixed_6.tower_1.conv_3.var")
    with pytest.raises(ValueError, match=r"a TorchScript file without the 2015 Inception graph's tensors \(no "
                                         r"mixed_6.tower_1.conv_3.var and 0 more\)"):
        load_inception(broken)
    torch.save(InceptionV3().state_dict(), tmp_path / "fidelity.pth")
    assert load_inception(str(tmp_path / "fidelity.pth")).weight_kind == TORCH_FIDELITY
