import itertools
import math

import pytest
import torch

from genviz_lib import data, landscape, models, sharpness, train


def quadratic(A):
    return lambda T: 0.5 * torch.einsum("...i,ij,...j->...", T, A, T)


def test_sharpness_of_a_diagonal_quadratic_is_its_analytic_box_maximum():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(20, generator=g, dtype=torch.float64) + 0.1
    w = torch.randn(20, generator=g, dtype=torch.float64)
    f = quadratic(torch.diag(a))
    alpha = 0.05
    h = alpha * (w.abs() + 1)
    # ½ a_i (w_i + ν_i)² is largest where ν_i pushes w_i away from 0, to the edge of the box
    exact = 0.5 * (a * (w.abs() + h) ** 2).sum() - 0.5 * (a * w ** 2).sum()
    got = sharpness.sharpness(f, w, alpha=alpha, steps=30)
    assert got == pytest.approx(exact.item(), rel=1e-10)
    base = 0.5 * (a * w ** 2).sum().item()
    assert sharpness.sharpness(f, w, alpha=alpha, steps=30, relative=True) == pytest.approx(exact.item() / (1 + base))


def test_sharpness_at_a_minimum_of_a_general_quadratic_matches_vertex_enumeration():
    g = torch.Generator().manual_seed(1)
    B = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = B @ B.T + 0.1 * torch.eye(6, dtype=torch.float64)
    w = torch.zeros(6, dtype=torch.float64)  # the minimum: the gradient vanishes at ν = 0
    f = quadratic(A)
    alpha = 0.3
    h = sharpness.box(w, alpha)
    # a convex function attains its maximum over a box at a vertex
    exact = max(f(torch.tensor(s, dtype=torch.float64) * h).item() for s in itertools.product((-1, 1), repeat=6))
    info = sharpness.sharpness(f, w, alpha=alpha, steps=50, restarts=64, generator=g, return_info=True)
    assert info.value == pytest.approx(exact, rel=1e-10)
    assert bool((info.nu.abs() <= h + 1e-15).all())
    assert info.per_restart[0].item() == 0.0  # the restart at ν = 0 never moves: the reason for restarts


def test_sharpness_of_a_net_beats_random_points_of_the_box():
    torch.manual_seed(0)
    roll = data.swiss_roll(n_train=100, n_test=10)
    net = train.train(models.swiss_roll_net(), roll.train, lr=3e-3, steps=300, progress=False).model
    f = landscape.objective(net, roll.train.X, roll.train.y)
    w = landscape.flatten(net)
    alpha = 1e-3
    value = sharpness.sharpness(f, w, alpha=alpha, steps=20, restarts=2, generator=torch.Generator().manual_seed(0))
    h = sharpness.box(w, alpha)
    with torch.no_grad():
        random_points = f(w + (torch.rand(200, w.numel()) * 2 - 1) * h) - f(w[None])
    assert value > random_points.max().item() > 0


def test_expected_sharpness_of_a_quadratic():
    g = torch.Generator().manual_seed(2)
    B = torch.randn(8, 8, generator=g, dtype=torch.float64)
    A = B @ B.T
    w = torch.randn(8, generator=g, dtype=torch.float64)
    sigma = torch.rand(8, generator=g, dtype=torch.float64) * 0.5
    exact = 0.5 * (A.diagonal() * sigma ** 2).sum().item()  # E ½(w+ν)ᵀA(w+ν) − ½wᵀAw = ½ tr(A Σ)
    mean, se = sharpness.expected_sharpness(quadratic(A), w, sigma, samples=20000, batch=5000, generator=g)
    assert abs(mean - exact) < 4 * se and se < 0.05 * exact
    # one number for σ
    mean, se = sharpness.expected_sharpness(quadratic(A), w, 0.1, samples=20000, batch=5000, generator=g)
    assert abs(mean - 0.5 * A.trace().item() * 0.01) < 4 * se
    with pytest.raises(ValueError, match="sigma must be"):
        sharpness.expected_sharpness(quadratic(A), w, torch.ones(3))


def test_kl_term_is_the_gaussian_kl_and_bicriteria_trade_off():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(50, generator=g, dtype=torch.float64)
    sigma = sharpness.neyshabur_sigma(w, 0.01)
    torch.testing.assert_close(sigma, 0.01 * (10 * w.abs() + 1))
    dist = torch.distributions
    exact = dist.kl_divergence(dist.Normal(w, sigma), dist.Normal(torch.zeros_like(w), sigma)).sum().item()
    assert sharpness.kl_term(w, sigma) == pytest.approx(exact, rel=1e-12)
    A = torch.eye(50, dtype=torch.float64)
    curve = sharpness.bicriteria(quadratic(A), w, [1e-3, 1e-2, 1e-1], samples=2000, batch=1000, generator=g)
    assert bool((curve.kl.diff() < 0).all()) and bool((curve.expected_sharpness.diff() > 0).all())
    exact_sharpness = [0.5 * (sharpness.neyshabur_sigma(w, a) ** 2).sum().item() for a in (1e-3, 1e-2, 1e-1)]
    for got, se, want in zip(curve.expected_sharpness, curve.stderr, exact_sharpness):
        assert abs(got.item() - want) < 4 * se.item() + 1e-12


def test_pac_bayes_bound_and_errors():
    bound = sharpness.pac_bayes_bound(0.01, 0.02, kl=100.0, m=1000, delta=0.05)
    assert bound == pytest.approx(0.03 + 4 * math.sqrt((100 + math.log(2000 / 0.05)) / 1000))
    f = quadratic(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha must be positive"):
        sharpness.sharpness(f, torch.zeros(3, dtype=torch.float64), alpha=0)
    with pytest.raises(ValueError, match="flat parameter vector"):
        sharpness.sharpness(f, torch.zeros(1, 3, dtype=torch.float64))
    net = models.swiss_roll_net()
    roll = data.swiss_roll(n_train=10, n_test=10)
    with pytest.raises(ValueError, match="has 3614 parameters"):
        sharpness.expected_sharpness(landscape.objective(net, roll.train.X, roll.train.y), torch.zeros(5), 0.1)
