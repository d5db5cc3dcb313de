"""Samplers on Gaussian data, whose exact velocity field and flow map are known in closed form.

Data z ~ N(mu, sigma^2) per element, noise n ~ N(0, 1), z_t = (1 - t) z + t n. Then
x_t ~ N((1 - t) mu, s_t^2) with s_t^2 = (1 - t)^2 sigma^2 + t^2, and
    v(x, t) = E[n - z | x_t = x] = -mu + (t - (1 - t) sigma^2) / s_t^2 * (x - (1 - t) mu).
The exact ODE maps noise x_1 to x_0 = mu + sigma x_1.
"""
import pytest
import torch

from helpers.models import randomize_, tiny_model
from mpdit.diffusion.sampling import dopri5, euler, euler_maruyama, heun, sample, time_grid

MU, SIGMA = 0.7, 0.3


def gaussian_velocity(x, t):
    t = float(t)
    var = (1 - t) ** 2 * SIGMA ** 2 + t ** 2
    return -MU + (t - (1 - t) * SIGMA ** 2) / var * (x - (1 - t) * MU)


@pytest.fixture
def noise():
    return torch.randn(4096, dtype=torch.float64)


def ode_error(sampler, noise, steps):
    x0, _ = sampler(gaussian_velocity, noise, steps)
    return (x0 - (MU + SIGMA * noise)).abs().max().item()


def test_euler_error_falls_linearly(noise):
    errors = [ode_error(euler, noise, steps) for steps in (16, 32, 64)]
    for coarse, fine in zip(errors, errors[1:]):
        assert 1.8 < coarse / fine < 2.2  # first order: halve the step, halve the error


def test_heun_error_falls_quadratically(noise):
    errors = [ode_error(heun, noise, steps) for steps in (16, 32, 64)]
    for coarse, fine in zip(errors, errors[1:]):
        assert 3.5 < coarse / fine < 4.5  # second order: halve the step, quarter the error
    assert errors[-1] < ode_error(euler, noise, 64) / 10


def dopri5_error(noise, tol):
    """Global error in torchdiffeq's own norm: RMS of error / (atol + rtol |x|)."""
    x0, nfe = dopri5(gaussian_velocity, noise, rtol=tol, atol=tol)
    error = x0 - (MU + SIGMA * noise)
    return (error / (tol + tol * x0.abs())).pow(2).mean().sqrt().item(), error.abs().max().item(), nfe


@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_dopri5_reaches_its_tolerance_and_counts_evaluations(noise, tol):
    normed, _, nfe = dopri5_error(noise, tol)
    # The tolerance bounds each step's local error; the global error sums a dozen steps of it.
    assert normed < 20
    assert nfe >= 6


def test_dopri5_error_follows_the_tolerance(noise):
    _, loose, _ = dopri5_error(noise, 1e-4)
    _, tight, _ = dopri5_error(noise, 1e-7)
    assert tight < loose / 100


def test_tighter_dopri5_tolerance_costs_more_evaluations(noise):
    _, loose = dopri5(gaussian_velocity, noise, rtol=1e-3, atol=1e-3)
    _, tight = dopri5(gaussian_velocity, noise, rtol=1e-8, atol=1e-8)
    assert tight > loose


def test_euler_maruyama_samples_the_data_distribution():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(200_000, dtype=torch.float64, generator=generator)
    x0, nfe = euler_maruyama(gaussian_velocity, noise, steps=200, generator=generator)
    assert nfe == 200
    assert abs(x0.mean().item() - MU) < 0.01
    assert abs(x0.std().item() - SIGMA) < 0.01
    # it is a stochastic sampler: samples are not the ODE's deterministic map of the noise
    assert (x0 - (MU + SIGMA * noise)).abs().mean() > 0.05


def test_time_grid_runs_from_noise_to_data_and_shift_moves_steps_to_noise():
    grid = time_grid(4)
    assert grid == [1.0, 0.75, 0.5, 0.25, 0.0]
    shifted = time_grid(4, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    assert all(s > u for s, u in zip(shifted[1:-1], grid[1:-1]))
    assert shifted[2] == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))


def test_shifted_grid_still_converges(noise):
    x0, _ = heun(gaussian_velocity, noise, 64, shift=2.0)
    assert (x0 - (MU + SIGMA * noise)).abs().max() < 1e-3


@pytest.mark.parametrize("method, nfe", [("euler", 5), ("heun", 10), ("euler_maruyama", 5)])
def test_sample_counts_batched_guided_evaluations(method, nfe):
    """Each evaluation is also reported to on_evaluation (the progress of `mpdit sample`'s batches)."""
    model = randomize_(tiny_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)])).eval()
    reported = []
    x0, used = sample(model, torch.tensor([1, 2, 3]), method=method, steps=5, cfg_scale=2.0, return_nfe=True,
                      on_evaluation=lambda: reported.append(1))
    assert x0.shape == (3, 4, 8, 8) and torch.isfinite(x0).all()
    assert used == nfe == len(reported)


def test_sample_dopri5_reports_function_evaluations():
    model = randomize_(tiny_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)])).eval()
    reported = []
    _, used = sample(model, torch.tensor([1, 2]), method="dopri5", rtol=1e-3, atol=1e-3, return_nfe=True,
                     on_evaluation=lambda: reported.append(1))
    assert used >= 6 and len(reported) == used


@pytest.mark.parametrize("call, argument", [
    (lambda: time_grid(0), "steps"),
    (lambda: time_grid(2.5), "steps"),
    (lambda: time_grid(4, shift=0.0), "shift"),
])
def test_bad_sampler_arguments(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_sample_rejects_unknown_method_and_wrong_noise():
    model = tiny_model("MPDiT-S", latent_size=8, stages=[(4, 1), (2, 1)])
    with pytest.raises(ValueError, match="method"):
        sample(model, torch.tensor([1]), method="rk4")
    with pytest.raises(ValueError, match="noise"):
        sample(model, torch.tensor([1]), noise=torch.randn(1, 4, 16, 16))


def test_closed_form_flow_map_is_right():
    """Guard for the tests above: the exact map must solve the ODE (checked with tiny Heun steps)."""
    noise = torch.linspace(-3, 3, 7, dtype=torch.float64)
    x0, _ = heun(gaussian_velocity, noise, 2000)
    torch.testing.assert_close(x0, MU + SIGMA * noise, rtol=0, atol=1e-6)  # Heun at h = 1/2000
    # at t = 1, x is the noise itself: E[n - z | n] = n - mu
    assert gaussian_velocity(torch.tensor(0.5, dtype=torch.float64), 1.0).item() == pytest.approx(0.5 - MU)


def test_cuda_graph_sampling_is_refused_where_it_cannot_run():
    model = tiny_model()
    y = torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"cuda_graph=True with method='dopri5': expected one of \('euler', 'heun'\)"):
        sample(model, y, method="dopri5", cuda_graph=True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda_graph=True: CUDA graphs need a CUDA device; the model is on cpu"):
            sample(model, y, steps=2, cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run by benchmarks/gpu_check.sh)")
@pytest.mark.parametrize("method", ["euler", "heun"])
def test_cuda_graph_samples_equal_eager_ones(method):
    """Replayed graphs compute the eager sampler's samples (bf16 autocast), across the guidance
    interval's edge (both graphs), and a second batch of new labels reuses the capture."""
    model = randomize_(tiny_model()).cuda().eval()
    for labels in ([1, 2, 3], [4, 5, 6]):
        y = torch.tensor(labels, device="cuda")
        noise = torch.randn(3, 4, 32, 32, device="cuda")
        kwargs = dict(method=method, steps=8, cfg_scale=2.0, guidance_interval=(0.3, 0.8), noise=noise)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            eager, eager_nfe = sample(model, y, return_nfe=True, **kwargs)
            graphed, graph_nfe = sample(model, y, cuda_graph=True, return_nfe=True, **kwargs)
        assert graph_nfe == eager_nfe
        torch.testing.assert_close(graphed, eager, rtol=2e-2, atol=2e-2)  # bf16 products either way
    assert len(model.cuda_graphs) == 1  # captured once for the batch size, kept on the model
