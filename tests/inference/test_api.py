"""The top-level API a newcomer calls first: mpdit.sample on a list of labels, the loss, decode, load."""
import torch

import mpdit


def test_top_level_api_samples_a_tensor_from_a_list_of_labels():
    model = mpdit.create_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)]).eval()
    x = mpdit.sample(model, [1, 2], steps=2)
    assert isinstance(x, torch.Tensor) and x.shape == (2, 4, 8, 8)
    x, nfe = mpdit.sample(model, [1, 2], steps=2, cfg_scale=2.0, return_nfe=True)
    assert nfe == 2
    loss = mpdit.flow_matching_loss(model, torch.randn(2, 4, 8, 8), [1, 2])
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert callable(mpdit.decode) and callable(mpdit.load)
