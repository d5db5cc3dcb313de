"""Model structure: shapes, schedules, and the details of docs/model.md."""
import math

import pytest
import torch

from helpers.models import random_inputs, randomize_, tiny_model
from mpdit import MODELS, create_model, get_config, list_models
from mpdit.models.embeddings import FNOTimeEmbedding, sincos_pos_embed_2d


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_maps_latents_to_velocities(name):
    model = randomize_(tiny_model(name, width=32, heads=2))
    x, t, y = random_inputs(model)
    out = model(x, t, y)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_registry_sizes_match_the_notes():
    expected = {"S": (384, 6, 12), "B": (768, 12, 12), "L": (1024, 16, 24), "XL": (1152, 16, 28)}
    for size, (width, heads, depth) in expected.items():
        mpdit = MODELS[f"MPDiT-{size}"]
        assert (mpdit.hidden_size, mpdit.num_heads, mpdit.depth) == (width, heads, depth)
        assert mpdit.stages == ((4, depth - 6), (2, 6))
        assert (mpdit.class_tokens, mpdit.time_embed, mpdit.shared_adaln, mpdit.skip) == (16, "fno", True, True)
        for patch in (2, 4, 8):
            dit = MODELS[f"DiT-{size}/{patch}"]
            assert dit == MODELS[f"SiT-{size}/{patch}"]
            assert (dit.hidden_size, dit.num_heads, dit.stages) == (width, heads, ((patch, depth),))
            assert (dit.class_tokens, dit.time_embed, dit.shared_adaln) == (0, "mlp", False)


def _token_counts(model, x, t, y):
    """Sequence length seen by each block, in order."""
    seen = []
    hooks = [b.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1])) for b in model.blocks]
    model(x, t, y)
    for hook in hooks:
        hook.remove()
    return seen


def test_mpdit_runs_coarse_blocks_on_80_tokens_and_fine_blocks_on_272():
    model = tiny_model("MPDiT-B")
    x, t, y = random_inputs(model, batch=1)
    assert _token_counts(model, x, t, y) == [16 + 64] * 6 + [16 + 256] * 6


def test_three_level_schedule_needs_no_new_code():
    model = randomize_(tiny_model("MPDiT-S", stages=[(8, 3), (4, 2), (2, 1)]))
    x, t, y = random_inputs(model)
    assert _token_counts(model, x, t, y) == [16 + 16] * 3 + [16 + 64] * 2 + [16 + 256]
    assert model(x, t, y).shape == x.shape
    assert len(model.upsamplers) == 2 and len(model.skip_embedders) == 2


def test_512px_latents():
    model = randomize_(tiny_model("MPDiT-S", latent_size=64))
    x, t, y = random_inputs(model, batch=1)
    assert _token_counts(model, x, t, y) == [16 + 256] * 6 + [16 + 1024] * 6
    assert model(x, t, y).shape == (1, 4, 64, 64)


def test_other_input_sizes_get_their_own_position_table():
    model = randomize_(tiny_model("MPDiT-S"))
    x, t, y = random_inputs(model, batch=2, size=16)
    assert model(x, t, y).shape == (2, 4, 16, 16)


@pytest.mark.parametrize("name", ["MPDiT-S", "DiT-S/2", "DiT-S/4"])
def test_output_is_exactly_zero_at_initialisation(name):
    model = tiny_model(name)
    x, t, y = random_inputs(model)
    assert torch.count_nonzero(model(x, t, y)) == 0


def test_zero_initialised_layers_of_the_notes():
    model = create_model("MPDiT-S")
    shared = model.adaLN_modulation[-1]
    assert torch.count_nonzero(shared.weight) == 0 and torch.count_nonzero(shared.bias) == 0
    assert torch.count_nonzero(model.final_layer.linear.weight) == 0
    assert shared.out_features == 6 * 384
    assert all(block.adaLN_modulation is None for block in model.blocks)  # one modulation for all
    assert model.final_layer.adaLN_modulation is None
    assert model.final_layer.linear.out_features == 2 * 2 * 4
    assert model.y_embedder.embedding_table.weight.shape == (1001, 16 * 384)
    assert isinstance(model.t_embedder, FNOTimeEmbedding)
    # the rest is not zero: zero weights elsewhere would stall training
    assert torch.count_nonzero(model.blocks[0].attn.qkv.weight) > 0


def test_dit_uses_per_block_adaln_and_one_class_vector():
    model = create_model("DiT-S/2")
    assert all(block.adaLN_modulation is not None for block in model.blocks)
    assert model.adaLN_modulation is None
    assert model.y_embedder.embedding_table.weight.shape == (1001, 384)
    assert model.final_layer.linear.out_features == 2 * 2 * 8  # DiT's learned-sigma channels


def test_shared_modulation_feeds_every_block_the_same_six_vectors():
    model = randomize_(tiny_model("MPDiT-S"))
    x, t, y = random_inputs(model)
    modulations = []
    hooks = [b.register_forward_hook(lambda mod, args, out: modulations.append(mod.modulation(args[1])))
             for b in model.blocks]
    model(x, t, y)
    for hook in hooks:
        hook.remove()
    expected = model.adaLN_modulation(model.t_embedder(t)).view(2, 6, -1)
    assert len(modulations) == len(model.blocks)
    for modulation in modulations:
        torch.testing.assert_close(modulation, expected)


def test_class_reaches_mpdit_only_through_class_tokens():
    """With m > 0 the label must not enter the modulation; changing it must change the output."""
    model = randomize_(tiny_model("MPDiT-S"))
    x, t, _ = random_inputs(model)
    out_a = model(x, t, torch.tensor([1, 2]))
    out_b = model(x, t, torch.tensor([3, 2]))
    assert not torch.allclose(out_a[0], out_b[0])
    torch.testing.assert_close(out_a[1], out_b[1])


def test_skip_switch_removes_the_input_patch_embedding():
    with_skip = randomize_(tiny_model("MPDiT-S"))
    without = tiny_model("MPDiT-S", skip=False)
    assert without.skip_embedders is None
    without.load_state_dict({k: v for k, v in with_skip.state_dict().items() if "skip_embedders" not in k})
    x, t, y = random_inputs(with_skip)
    assert not torch.allclose(with_skip(x, t, y), without(x, t, y))


def test_component_switches_rebuild_mpdit_from_dit():
    from_dit = get_config("DiT-B/2", shared_adaln=True, learn_sigma=False, class_tokens=16, time_embed="fno",
                          fine_depth=6)
    assert from_dit == get_config("MPDiT-B")


def test_fine_depth_moves_blocks_between_stages():
    assert get_config("MPDiT-XL", fine_depth=8).stages == ((4, 20), (2, 8))
    assert get_config("MPDiT-XL-3L", fine_depth=4).stages == ((8, 14), (4, 10), (2, 4))
    assert get_config("DiT-B/2", fine_depth=12).stages == ((2, 12),)


def test_sincos_table_matches_dit_layout():
    """DiT/MAE layout: first half encodes the column, second half the row; [sin, cos] within each."""
    h, w, dim = 3, 5, 16
    table = sincos_pos_embed_2d(h, w, dim)
    omega = [1.0 / 10000 ** (k / (dim / 4)) for k in range(dim // 4)]
    for i in range(h):
        for j in range(w):
            expected = ([math.sin(j * o) for o in omega] + [math.cos(j * o) for o in omega]
                        + [math.sin(i * o) for o in omega] + [math.cos(i * o) for o in omega])
            torch.testing.assert_close(table[i * w + j], torch.tensor(expected))
