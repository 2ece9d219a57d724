"""A NaN at the point itself is named as such by every measure, before any search starts."""

import pytest
import torch

from genviz_lib import boundaries, curvature, data, landscape, models, norms, sharpness, volume

MESSAGE = r"the loss at θ is nan: check the model's weights and data"


@pytest.fixture
def broken():
    torch.manual_seed(0)
    net = models.MLP(2, [8], 2).double()
    with torch.no_grad():
        next(net.parameters())[0, 0] = float("nan")
    X, y = torch.randn(20, 2, dtype=torch.float64), torch.arange(20) % 2
    f = landscape.objective(net, X, y)
    return net, X, y, f, landscape.flatten(net)


def _calls():
    d = lambda theta: torch.ones(1, theta.numel(), dtype=theta.dtype)
    return {
        "basin_radius": lambda f, t: volume.basin_radius(f, t, d(t), cutoff=0.1),
        "sharpness": lambda f, t: sharpness.sharpness(f, t, steps=2),
        "expected_sharpness": lambda f, t: sharpness.expected_sharpness(f, t, sigma=0.1, samples=4, batch=2),
        "top_eigenvalues": lambda f, t: curvature.top_eigenvalues(f, t, k=1),
        "hessian_trace": lambda f, t: curvature.hessian_trace(f, t, samples=4),
        "spectral_density": lambda f, t: curvature.spectral_density(f, t, probes=1, steps=3),
        "frobenius_estimate": lambda f, t: curvature.frobenius_estimate(f, t, samples=2),
        "slice_1d": lambda f, t: landscape.slice_1d(f, t, d(t)[0], torch.tensor([0.0, 1.0])),
        "slice_2d": lambda f, t: landscape.slice_2d(f, t, d(t)[0], d(t)[0], torch.tensor([0.0]), torch.tensor([0.0])),
    }


@pytest.mark.parametrize("measure", sorted(_calls()))
def test_every_measure_names_a_nan_at_the_point(broken, measure):
    _, _, _, f, theta = broken
    with pytest.raises(ValueError, match=MESSAGE):
        _calls()[measure](f, theta)


def test_the_cutoff_advice_is_only_for_finite_losses(broken):
    net, X, y, _, _ = broken
    with torch.no_grad():
        next(net.parameters())[0, 0] = 0.0
    f, theta = landscape.objective(net, X, y), landscape.flatten(net)
    with pytest.raises(ValueError, match="is at or below the loss at the point itself .* choose a larger cutoff"):
        volume.basin_radius(f, theta, torch.ones(1, theta.numel(), dtype=theta.dtype), cutoff=1e-9)


def test_function_space_measures_name_non_finite_outputs(broken):
    net, X, y, _, _ = broken
    with pytest.raises(ValueError, match="the network's outputs include nan: check the model's weights and data"):
        norms.margins(net, X, y)
    with pytest.raises(ValueError, match="the network's outputs include nan"):
        boundaries.boundary_stats(net.float(), data.Data(X.float(), y), resolution=20)
