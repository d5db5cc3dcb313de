"""mpdit.compat: the official DiT, SiT and reference-MPDiT classes on the engine, against plain
re-statements of the official forwards (official_reference.py, from the layouts facts file)."""
import pytest
import torch

from helpers.models import assert_same_function
from helpers.official_reference import dit_forward, forward_with_cfg, mpdit_ref_forward
from mpdit.compat import DiT_models, MPDiT, MPDiT_models, MPDiTv2, SiT_models


def random_official_state(model, std=0.05):
    """Random values for every key of the official layout the module declares (its state_dict)."""
    return {key: torch.randn(tensor.shape) * std for key, tensor in model.state_dict().items()}


def loaded(model, std=0.05):
    state = random_official_state(model, std)
    model.load_state_dict(state, strict=True)
    return model.eval(), state


# --------------------------------------------------------------------------- layouts of the XL models
@pytest.mark.parametrize("registry, name, kwargs, keys, values", [
    (DiT_models, "DiT-XL/2", {}, 292, 675_129_632),
    (SiT_models, "SiT-XL/2", {}, 292, 675_129_632),
    (MPDiT_models, "MPDiT-XL/4x", {}, 257, 481_207_856),
    (MPDiT_models, "MPDiT-XL/4x", {"time_emb": "mlp"}, 245, None),
    (MPDiT_models, "MPDiT-XL/4x", {"skip_connection": False}, 253, None),
    (MPDiT_models, "MPDiTv2-XL", {}, 266, None),
])
def test_xl_state_dicts_match_the_published_key_counts_and_sizes(registry, name, kwargs, keys, values):
    with torch.device("meta"):
        state = registry[name](**kwargs).state_dict()
    assert len(state) == keys
    if values is not None:
        assert sum(t.numel() for t in state.values()) == values


def test_dit_xl_keys_and_shapes():
    with torch.device("meta"):
        state = DiT_models["DiT-XL/2"]().state_dict()
    assert list(state)[0] == "pos_embed" and state["pos_embed"].shape == (1, 256, 1152)
    expected = {"x_embedder.proj.weight": (1152, 4, 2, 2), "t_embedder.mlp.0.weight": (1152, 256),
                "y_embedder.embedding_table.weight": (1001, 1152), "blocks.27.attn.qkv.weight": (3456, 1152),
                "blocks.0.mlp.fc2.weight": (1152, 4608), "blocks.3.adaLN_modulation.1.weight": (6912, 1152),
                "final_layer.linear.weight": (32, 1152), "final_layer.adaLN_modulation.1.bias": (2304,)}
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key


def test_mpdit_xl_keys_and_shapes():
    with torch.device("meta"):
        state = MPDiT_models["MPDiT-XL/4x"]().state_dict()
    expected = {"pos_embed": (1, 256, 1152), "pos_embed_downsampled": (1, 64, 1152),
                "x_embedder.proj.weight": (1152, 4, 4, 4), "x_embedder_skip.proj.weight": (1152, 4, 2, 2),
                "linear_skip.weight": (1152, 1152), "t_embedder.fc0.weight": (32, 1),
                "t_embedder.conv2.weights_imag": (32, 32, 16), "t_embedder.w1.weight": (32, 32, 1),
                "t_embedder.fc1.weight": (1152, 32), "y_embedder.embedding_table.weight": (1001, 18432),
                "time_modulation.1.weight": (6912, 1152), "downsample_blocks.21.mlp.fc1.weight": (4608, 1152),
                "upsampler.proj.weight": (4608, 1152), "upsampler.refine.bias": (1152,),
                "upsample_blocks.5.attn.proj.weight": (1152, 1152), "final_layer.linear.weight": (16, 1152)}
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "downsample_blocks.22.attn.qkv.weight" not in state and "upsample_blocks.6.attn.qkv.weight" not in state


# --------------------------------------------------------------------------- forwards
def test_pinned_dit_interface_matches_the_official_forward():
    model = DiT_models["DiT-S/2"](input_size=16, in_channels=4, num_classes=1000, learn_sigma=True,
                                  class_dropout_prob=0.1)
    model, state = loaded(model)
    x = torch.randn(4, 4, 16, 16)
    t = torch.tensor([0, 17, 500, 999])  # DiT's integer steps, fed as given
    y = torch.tensor([3, 999, 1000, 42])
    with torch.no_grad():
        out = model(x, t, y)
        assert out.shape == (4, 8, 16, 16)  # eps and the variance interpolation, as DiT returns them
        torch.testing.assert_close(out, dit_forward(state, x, t, y, heads=6), rtol=1e-5, atol=1e-5)
        y_pair = torch.tensor([3, 42, 1000, 1000])
        guided = model.forward_with_cfg(x, t, y_pair, 4.0)
        reference = forward_with_cfg(lambda *a: dit_forward(state, *a, heads=6), x, t, y_pair, 4.0, guided=3)
        torch.testing.assert_close(guided, reference, rtol=1e-5, atol=1e-5)
    # channel 3 is not guided: it keeps each half's own output
    plain = model(torch.cat([x[:2], x[:2]]), t, y_pair)
    torch.testing.assert_close(guided[:, 3:], plain[:, 3:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("learn_sigma", [True, False])
def test_sit_matches_the_official_forward(learn_sigma):
    model, state = loaded(SiT_models["SiT-S/4"](input_size=16, learn_sigma=learn_sigma))
    x, t, y = torch.randn(4, 4, 16, 16), torch.rand(4), torch.tensor([1, 2, 1000, 7])
    with torch.no_grad():
        out = model(x, t, y)
        assert out.shape == (4, 4, 16, 16)  # SiT drops the sigma channels
        reference = dit_forward(state, x, t, y, heads=6, learn_sigma=learn_sigma, sit=True)
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
        y_pair = torch.tensor([1, 2, 1000, 1000])
        reference = forward_with_cfg(lambda *a: dit_forward(state, *a, heads=6, learn_sigma=learn_sigma, sit=True),
                                     x, t, y_pair, 1.5, guided=3)
        torch.testing.assert_close(model.forward_with_cfg(x, t, y_pair, 1.5), reference, rtol=1e-5, atol=1e-5)


def test_registered_mpdit_b_matches_the_reference_forward():
    model, state = loaded(MPDiT_models["MPDiT-B/4x"](input_size=16), std=0.03)
    x, t, y = torch.randn(2, 4, 16, 16), torch.rand(2), torch.tensor([5, 1000])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), mpdit_ref_forward(state, x, t, y, heads=12), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, kwargs, levels", [
    (MPDiT, {"patch_size": 4, "depth_downsample": 2, "depth_upsample": 2}, 2),
    (MPDiT, {"patch_size": 4, "depth_downsample": 1, "depth_upsample": 2, "time_emb": "mlp", "skip_connection": False,
             "num_condition_tokens": 4}, 2),
    (MPDiTv2, {"depth_list": (2, 1, 1)}, 3),
    (MPDiTv2, {"depth_list": (1, 1, 1), "time_emb": "mlp", "joint": True}, 3),
])
def test_reference_mpdit_variants_match_the_reference_forward(cls, kwargs, levels):
    model, state = loaded(cls(input_size=16, hidden_size=64, num_heads=4, **kwargs))
    m = kwargs.get("num_condition_tokens", 16)
    x, t, y = torch.randn(4, 4, 16, 16), torch.rand(4), torch.tensor([9, 0, 1000, 1000])
    with torch.no_grad():
        forward = lambda *a: mpdit_ref_forward(state, *a, heads=4, m=m, levels=levels)  # noqa: E731
        out = model(x, t, y)
        assert out.shape == (4, 8 if kwargs.get("joint") else 4, 16, 16)
        torch.testing.assert_close(out, forward(x, t, y), rtol=1e-5, atol=1e-5)
        # the reference guides every velocity channel
        reference = forward_with_cfg(forward, x, t, y, 3.0, guided=4)
        torch.testing.assert_close(model.forward_with_cfg(x, t, y, 3.0), reference, rtol=1e-5, atol=1e-5)


def test_train_mode_drops_labels_as_dit_does():
    model, state = loaded(DiT_models["DiT-S/8"](input_size=16, class_dropout_prob=1.0))
    x, t, y = torch.randn(3, 4, 16, 16), torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    model.train()
    with torch.no_grad():
        null = torch.full_like(y, 1000)
        torch.testing.assert_close(model(x, t, y), dit_forward(state, x, t, null, heads=6), rtol=1e-5, atol=1e-5)
        model.eval()  # eval: the labels as given
        torch.testing.assert_close(model(x, t, y), dit_forward(state, x, t, y, heads=6), rtol=1e-5, atol=1e-5)


def test_no_class_dropout_means_no_null_row():
    model = DiT_models["DiT-S/8"](input_size=16, class_dropout_prob=0.0, num_classes=10)
    assert model.state_dict()["y_embedder.embedding_table.weight"].shape == (10, 384)
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 9\]"):
        model(torch.randn(1, 4, 16, 16), torch.tensor([3]), torch.tensor([10]))


# --------------------------------------------------------------------------- state-dict plumbing
def test_wrapped_module_keys_keep_the_official_names_under_the_prefix():
    wrapped = torch.nn.Sequential(MPDiT(input_size=16, patch_size=4, hidden_size=32, num_heads=2,
                                        depth_downsample=1, depth_upsample=1))
    state = wrapped.state_dict()
    assert "0.upsampler.proj.weight" in state and "0.t_embedder.conv0.weights_real" in state
    fresh = torch.nn.Sequential(MPDiT(input_size=16, patch_size=4, hidden_size=32, num_heads=2,
                                      depth_downsample=1, depth_upsample=1))
    fresh.load_state_dict(state, strict=True)
    for (name, a), b in zip(wrapped.named_parameters(), fresh.parameters()):
        assert torch.equal(a, b), name


def test_compiled_ema_prefix_is_stripped_on_load():
    """The reference's --compile EMA keys start with '_orig_mod.' (layouts facts)."""
    source = MPDiT(input_size=16, patch_size=4, hidden_size=32, num_heads=2, depth_downsample=1, depth_upsample=1)
    state = {"_orig_mod." + key: value for key, value in random_official_state(source).items()}
    source.load_state_dict(state, strict=True)
    assert torch.equal(source.state_dict()["upsampler.proj.weight"], state["_orig_mod.upsampler.proj.weight"])


def test_strict_load_names_a_wrong_key():
    model = DiT_models["DiT-S/8"](input_size=16)
    state = random_official_state(model)
    state["blocks.0.attn.qkv.weight_typo"] = state.pop("blocks.0.attn.qkv.weight")
    with pytest.raises(RuntimeError, match="blocks.0.attn.qkv.weight"):
        model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- fused backends
@pytest.mark.slow
def test_fused_backend_equals_torch_on_official_models(fused):
    """The official-layout MPDiT and DiT on a fused backend: same outputs and every gradient."""
    for make in (lambda **kw: MPDiT(input_size=16, patch_size=4, hidden_size=64, num_heads=4, depth_downsample=2,
                                    depth_upsample=1, **kw),
                 lambda **kw: DiT_models["DiT-S/4"](input_size=8, hidden_size=64, num_heads=4, depth=2, **kw)):
        reference, _ = loaded(make(), std=0.05)
        reference = reference.to(fused.device)
        model = make(kernel_backend=fused.backend.name).to(fused.device)
        model.load_state_dict(reference.state_dict())
        x = torch.randn(2, 4, 16, 16, device=fused.device)[..., : reference.config.latent_size,
                                                          : reference.config.latent_size]
        t = torch.rand(2, device=fused.device) * (999 if isinstance(reference, DiT_models["DiT-S/4"].func) else 1)
        y = torch.tensor([1, 1000], device=fused.device)
        assert_same_function(reference, model, x, t, y)


@pytest.mark.slow
def test_official_module_compiles_to_one_graph():
    model, _ = loaded(MPDiT(input_size=16, patch_size=4, hidden_size=32, num_heads=2, depth_downsample=1,
                            depth_upsample=1))
    model.check_values = False  # value checks sync the host; the compiled trainer turns them off too
    compiled = torch.compile(model, fullgraph=True)
    x, t, y = torch.randn(2, 4, 16, 16), torch.rand(2), torch.tensor([3, 1000])
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, y), model(x, t, y), rtol=1e-5, atol=1e-5)
