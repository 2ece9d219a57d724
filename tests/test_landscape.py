import math

import numpy as np
import pytest
import torch

from genviz_lib import data, landscape, models, volume
from genviz_lib.data import Data


def quadratic(A):
    """The batched objective ½ θᵀAθ."""
    return lambda T: 0.5 * torch.einsum("...i,ij,...j->...", T, A, T)


# ------------------------------------------------------------------ objectives and directions


def test_flatten_unflatten_round_trip():
    torch.manual_seed(0)
    net = models.swiss_roll_net()
    theta = landscape.flatten(net)
    assert theta.shape == (3614,)
    other = models.swiss_roll_net()
    landscape.unflatten(other, theta)
    torch.testing.assert_close(landscape.flatten(other), theta)
    with pytest.raises(ValueError, match="has 3614 parameters"):
        landscape.unflatten(other, theta[:-1])


def test_objective_matches_a_plain_forward_pass():
    torch.manual_seed(0)
    roll = data.swiss_roll(n_train=100, n_test=10)
    net = models.swiss_roll_net()
    f = landscape.objective(net, roll.train.X, roll.train.y, chunk=3)
    theta = landscape.flatten(net)
    d = landscape.filter_normalized_direction(net, torch.Generator().manual_seed(1))
    Theta = torch.stack([theta + a * d for a in (-0.5, 0.0, 0.3, 1.0)])
    got = f(Theta)
    for i, point in enumerate(Theta):
        probe = models.swiss_roll_net()
        landscape.unflatten(probe, point)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(probe(roll.train.X)[:, 0], roll.train.y.float())
        assert got[i].item() == pytest.approx(loss.item(), rel=1e-5)
    assert f(theta).ndim == 0  # a single point gives a scalar
    with pytest.raises(ValueError, match="has 3614 parameters"):
        f(Theta[:, :10])


def test_conv_objective_strategies_agree_with_a_plain_forward_pass():
    torch.manual_seed(0)
    net = models.SmallCNN((3, 4), in_channels=1, image_size=8, num_classes=5)
    X, y = torch.randn(23, 1, 8, 8), torch.randint(0, 5, (23,))
    theta = landscape.flatten(net)
    Theta = theta + 0.1 * torch.randn(4, theta.numel())
    expected = []
    for point in Theta:
        landscape.unflatten(net, point)
        expected.append(torch.nn.functional.cross_entropy(net(X), y).item())
    landscape.unflatten(net, theta)
    loop = landscape.objective(net, X, y, data_chunk=5)  # 23 = 4 chunks of 5 and one of 3
    assert loop.strategy == "loop" and loop.data_chunk == 5
    assert landscape.objective(net, X, y).data_chunk == 23
    batched = landscape.objective(net, X, y, strategy="vmap", chunk=3)
    assert batched.strategy == "vmap"
    with torch.no_grad():
        np.testing.assert_allclose(loop(Theta).numpy(), expected, rtol=1e-5)
        np.testing.assert_allclose(batched(Theta).numpy(), expected, rtol=1e-5)
    g = landscape.metrics(net, {"train": Data(X, y), "test": Data(X[:7], y[:7])})
    np.testing.assert_allclose(g(Theta)["train_loss"].numpy(), expected, rtol=1e-5)
    # gradients flow through the loop as through vmap
    from genviz_lib import curvature
    torch.testing.assert_close(curvature.gradient(loop, theta), curvature.gradient(batched, theta),
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="strategy must be"):
        landscape.objective(net, X, y, strategy="fast")


def test_objective_rejects_data_that_does_not_fit_the_model():
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(3,\)"):
        landscape.objective(models.swiss_roll_net(), torch.randn(5, 3), torch.zeros(5, dtype=torch.long))


def test_objective_uses_batchnorm_running_statistics():
    torch.manual_seed(0)
    net = models.VGG([4, "M"], in_channels=1, image_size=4, num_classes=3)
    net(torch.randn(16, 1, 4, 4))  # a forward pass in train mode moves the running statistics
    X, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    f = landscape.objective(net, X, y)
    net.eval()
    expected = torch.nn.functional.cross_entropy(net(X), y)
    assert f(landscape.flatten(net)).item() == pytest.approx(expected.item(), rel=1e-5)
    assert net.training is False


def test_filter_normalized_direction_has_the_weights_filter_norms():
    torch.manual_seed(0)
    net = models.SmallCNN((4, 8), image_size=8)
    d = landscape.filter_normalized_direction(net, torch.Generator().manual_seed(0))
    offset = 0
    for name, p in landscape.parameters(net):
        part = d[offset: offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.ndim < 2:
            assert torch.count_nonzero(part) == 0, name
        else:
            torch.testing.assert_close(part.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
    e = landscape.filter_normalized_direction(net, torch.Generator().manual_seed(1), one_dim="filter")
    bias = net.classifier.bias.detach()
    assert e[-bias.numel():].norm().item() == pytest.approx(bias.norm().item(), rel=1e-5)


def test_orthogonalize_and_random_directions():
    g = torch.Generator().manual_seed(0)
    D = landscape.random_directions(50, 4, g, dtype=torch.float64)
    torch.testing.assert_close(D.norm(dim=1), torch.ones(4, dtype=torch.float64))
    d2 = landscape.orthogonalize(D[1], D[0])
    assert abs(float(d2 @ D[0])) < 1e-12 and float(d2.norm()) == pytest.approx(1.0)


def test_grid_contains_the_origin():
    g = landscape.grid(-1.0, 2.0, 10)
    assert (g == 0).sum() == 1 and len(g) == 10 and g[0] == -1.0 and g[-1] == 2.0


def test_slices_on_a_quadratic_with_a_non_square_grid():
    A = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    f = quadratic(A)
    theta = torch.zeros(2, dtype=torch.float64)
    e1, e2 = torch.eye(2, dtype=torch.float64)
    alphas, betas = landscape.grid(-1, 1, 5), landscape.grid(-2, 2, 3)
    Z = landscape.slice_2d(f, theta, e1, e2, alphas, betas)
    assert Z.shape == (3, 5)  # rows follow betas, columns alphas
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            assert Z[i, j].item() == pytest.approx(0.5 * a ** 2 + 2.0 * b ** 2)
    torch.testing.assert_close(landscape.slice_1d(f, theta, e2, alphas), 2.0 * alphas ** 2)


def test_metrics_give_train_and_test_from_one_pass():
    torch.manual_seed(0)
    roll = data.swiss_roll(n_train=60, n_test=40)
    net = models.swiss_roll_net()
    g = landscape.metrics(net, {"train": roll.train, "test": roll.test})
    theta = landscape.flatten(net)
    d = landscape.filter_normalized_direction(net)
    out = landscape.slice_2d(g, theta, d, landscape.orthogonalize(landscape.filter_normalized_direction(net), d),
                             landscape.grid(-1, 1, 3), landscape.grid(-1, 1, 3))
    assert set(out) == {"train_loss", "train_acc", "test_loss", "test_acc"} and out["test_acc"].shape == (3, 3)
    with torch.no_grad():
        logits = net(roll.test.X)
    acc = ((logits[:, 0] > 0).long() == roll.test.y).float().mean()
    assert out["test_acc"][1, 1].item() == pytest.approx(acc.item())


# ------------------------------------------------------------------ basin radius and volume


def test_basin_radius_on_a_quadratic_is_exact():
    torch.manual_seed(0)
    n = 6
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor([0.5, 1, 2, 4, 8, 16], dtype=torch.float64)) @ Q.T
    theta = torch.zeros(n, dtype=torch.float64)
    phi = landscape.random_directions(n, 200, torch.Generator().manual_seed(0), dtype=torch.float64)
    c = 0.3
    result = volume.basin_radius(quadratic(A), theta, phi, c, rtol=1e-6, r_max=100)
    expected = torch.sqrt(2 * c / torch.einsum("mi,ij,mj->m", phi, A, phi))
    assert ((result.radii - expected).abs() <= 1e-6 * expected).all()
    assert result.n_at_cap == 0


def test_several_cutoffs_from_one_pass():
    A = torch.eye(3, dtype=torch.float64) * 2
    phi = torch.eye(3, dtype=torch.float64)
    result = volume.basin_radius(quadratic(A), torch.zeros(3, dtype=torch.float64), phi, [0.01, 0.1, 1.0],
                                 rtol=1e-8)
    assert result.radii.shape == (3, 3)
    for i, c in enumerate((0.01, 0.1, 1.0)):
        torch.testing.assert_close(result.radii[i], torch.full((3,), math.sqrt(c), dtype=torch.float64), rtol=1e-7, atol=0)


def test_log_volume_exact_for_an_isotropic_basin():
    n, a, c = 10, 3.0, 0.5
    r = math.sqrt(2 * c / a)
    radii = volume.basin_radius(quadratic(a * torch.eye(n, dtype=torch.float64)), torch.zeros(n, dtype=torch.float64),
                                landscape.random_directions(n, 20, dtype=torch.float64), c, rtol=1e-10).radii
    expected = volume.log_unit_ball_volume(n) + n * math.log(r)
    assert float(volume.log_volume(radii, n)) == pytest.approx(expected, abs=1e-8)
    # the unit ball's volume against known values: 2, π, 4π/3
    assert [math.exp(volume.log_unit_ball_volume(k)) for k in (1, 2, 3)] == pytest.approx([2, math.pi, 4 * math.pi / 3])


def test_log_volume_of_an_anisotropic_basin():
    # the volume of {½ θᵀAθ < c} is ω_n Π sqrt(2c/λ_i); the estimator averages r(φ)^n over the sphere
    n, c = 5, 0.2
    eig = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64)
    A = torch.diag(eig)
    phi = landscape.random_directions(n, 20000, torch.Generator().manual_seed(0), dtype=torch.float64)
    radii = volume.basin_radius(quadratic(A), torch.zeros(n, dtype=torch.float64), phi, c, rtol=1e-6).radii
    exact = volume.log_unit_ball_volume(n) + 0.5 * torch.log(2 * c / eig).sum().item()
    estimate, low, high = volume.log_volume_interval(radii, n, samples=500, generator=torch.Generator().manual_seed(1))
    assert estimate == pytest.approx(exact, abs=0.03)
    assert low < exact < high


def test_log_volume_never_overflows():
    radii = torch.full((100,), 50.0)
    value = volume.log_volume(radii, 100_000)
    assert torch.isfinite(value) and float(value) == pytest.approx(volume.log_unit_ball_volume(100_000) + 1e5 * math.log(50))


def test_basin_radius_errors():
    A = torch.eye(2, dtype=torch.float64)
    f, theta = quadratic(A), torch.ones(2, dtype=torch.float64)
    phi = torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="not inside a basin"):
        volume.basin_radius(f, theta, phi, cutoff=0.5)  # f(θ) = 1
    with pytest.raises(ValueError, match="every direction reached r_max"):
        volume.basin_radius(f, theta, phi, cutoff=1e6, r_max=10)
    nan_f = lambda T: torch.where(T[:, 1] > 0.5, torch.nan, f(T))
    with pytest.raises(ValueError, match="along direction 1"):
        volume.basin_radius(nan_f, torch.zeros(2, dtype=torch.float64), phi, cutoff=10.0)
    with pytest.raises(ValueError, match=r"directions must be \[m, 2\]"):
        volume.basin_radius(f, theta, torch.ones(3, 3), cutoff=5.0)


def test_capped_directions_are_reported():
    A = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))  # flat along the second axis
    result = volume.basin_radius(quadratic(A), torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64),
                                 cutoff=0.5, r_max=20.0)
    assert result.at_cap.tolist() == [False, True] and result.radii[1] == 20.0
    assert result.radii[0].item() == pytest.approx(1.0, rel=1e-3)


def test_width_at_finds_the_interval_below_the_cutoff():
    a = landscape.grid(-1, 1, 21)
    values = (a - 0.1) ** 2  # below 0.25 for a in (-0.4, 0.6)
    lo, hi = landscape.width_at(a, values, 0.25)
    assert (lo, hi) == pytest.approx((-0.3, 0.5))  # the grid points just inside the crossings
    assert landscape.width_at(a, values, 10.0) == pytest.approx((-1.0, 1.0))  # never crosses: the whole grid
    with pytest.raises(ValueError, match="not below the cutoff"):
        landscape.width_at(a, values + 1, 0.5)
    with pytest.raises(ValueError, match="contain 0"):
        landscape.width_at(torch.linspace(-1, 1, 4), values[:4], 0.25)


def test_filter_normalized_plane_is_two_orthogonal_filter_normalized_directions():
    torch.manual_seed(0)
    net = models.MLP(3, [5], 2)
    d1, d2 = landscape.filter_normalized_plane(net, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)  # the same draws, by hand
    e1 = landscape.filter_normalized_direction(net, gen)
    e2 = landscape.filter_normalized_direction(net, gen)
    assert torch.equal(d1, e1)
    assert float(d1 @ d2) == pytest.approx(0.0, abs=1e-5)
    assert float(d2.norm()) == pytest.approx(float(e2.norm()), rel=1e-6)  # orthogonalized, norm kept
    w = net[0].weight.detach()
    rows = d1[: w.numel()].reshape(w.shape)
    assert torch.allclose(rows.norm(dim=1), w.norm(dim=1), rtol=1e-5)  # d1 is filter-normalized


def test_moved_copies_the_net_and_shifts_its_weights():
    torch.manual_seed(0)
    net = models.MLP(2, [4], 2)
    theta = landscape.flatten(net)
    d = torch.arange(theta.numel(), dtype=theta.dtype) / 10
    out = landscape.moved(net, d, 0.5)
    assert out is not net and torch.equal(landscape.flatten(net), theta)  # the original is left alone
    assert torch.allclose(landscape.flatten(out), theta + 0.5 * d)
    X = torch.randn(7, 2)
    f = landscape.objective(net, X, torch.zeros(7, dtype=torch.long))
    assert float(f((theta + 0.5 * d)[None])[0]) == pytest.approx(
        float(landscape.objective(out, X, torch.zeros(7, dtype=torch.long))(landscape.flatten(out)[None])[0]))
    with pytest.raises(ValueError, match="the direction has shape"):
        landscape.moved(net, d[:-1], 1.0)


def test_a_train_mode_objective_leaves_the_models_batchnorm_statistics_alone():
    torch.manual_seed(0)
    net = models.VGG([4, "M"], in_channels=1, image_size=4, num_classes=3)
    before = {k: b.clone() for k, b in net.named_buffers()}
    X, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    f = landscape.objective(net, X, y, train_mode=True, strategy="loop")
    theta = landscape.flatten(net)
    f(theta), f(theta + 0.1)
    for k, b in net.named_buffers():
        assert torch.equal(b, before[k]), k  # running mean, variance and the batch count are as they were
    net.train()
    expected = torch.nn.functional.cross_entropy(net(X), y)  # train mode: the batch's own statistics
    assert f(theta).item() == pytest.approx(expected.item(), rel=1e-5)
