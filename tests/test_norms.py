import itertools

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from genviz_lib import models, norms


def brute_force_path_sum(matrices, p):
    """Σ over all input→output paths of Π |W[j_i, j_{i−1}]|^p, by enumerating the paths."""
    sizes = [matrices[0].shape[1]] + [M.shape[0] for M in matrices]
    total = 0.0
    for path in itertools.product(*[range(s) for s in sizes]):
        prod = 1.0
        for M, (j_in, j_out) in zip(matrices, zip(path, path[1:])):
            prod *= abs(M[j_out, j_in].item()) ** p
        total += prod
    return total


def test_margins_and_the_percentile_margin():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0], [1.0, 1.0, 4.0]])
    got = norms.margins(nn.Identity(), logits, torch.tensor([0, 2, 2]))
    torch.testing.assert_close(got, torch.tensor([1.0, -6.0, 3.0]))
    X = torch.stack([torch.tensor([0.0, float(k)]) for k in range(1, 11)])  # margins 1..10 (single logit → [0, z])
    y = torch.ones(10, dtype=torch.long)
    assert norms.margin(nn.Identity(), X[:, 1:], y, percentile=5) == 1.0
    assert norms.margin(nn.Identity(), X[:, 1:], y, percentile=20) == 2.0
    assert norms.margin(nn.Identity(), X[:, 1:], y, percentile=25) == 3.0


def test_path_norms_equal_enumeration_of_paths_on_a_tiny_mlp():
    torch.manual_seed(0)
    net = models.MLP(3, [4, 5], 2, bias=False)
    mats = [W for _, W in norms.weight_tensors(net)]
    for p in (1, 2, 3):
        assert norms.path_norm(net, p) == pytest.approx(brute_force_path_sum(mats, p) ** (1 / p), rel=1e-10)


def test_path_norm_of_a_conv_net_equals_enumeration_through_its_unrolled_layers():
    torch.manual_seed(1)
    net = models.SmallCNN((2,), in_channels=1, image_size=4, num_classes=3, bias=False).double()
    conv, linear = net.features[0], net.classifier
    # a single convolution as a dense [outputs, inputs] matrix: each entry is one kernel weight or 0
    dense = torch.autograd.functional.jacobian(lambda x: conv(x.view(1, 1, 4, 4)).flatten(), torch.zeros(16,
                                                                                                       dtype=torch.float64))
    mats = [dense, linear.weight.detach()]
    for p in (1, 2):
        assert norms.path_norm(net, p, input_shape=(1, 4, 4)) == pytest.approx(
            brute_force_path_sum(mats, p) ** (1 / p), rel=1e-10)
    with pytest.raises(ValueError, match="input_shape"):
        norms.path_norm(net, 2)


def test_path_norm_rejects_biases_and_max_pooling():
    with pytest.raises(ValueError, match="bias-free"):
        norms.path_norm(models.MLP(3, [4], 2), 2)
    with pytest.raises(ValueError, match="MaxPool2d"):
        norms.path_norm(nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.MaxPool2d(2)), 2, input_shape=(1, 6, 6))


def test_measures_are_norm_products_over_the_squared_margin():
    torch.manual_seed(2)
    net = models.MLP(4, [6], 3, bias=False).double()
    X = torch.randn(50, 4, dtype=torch.float64)
    y = net(X).argmax(1)  # the net fits these labels, so the margin is positive
    got = norms.measures(net, X, y)
    gamma = norms.margin(net, X, y)
    W1, W2 = (W for _, W in norms.weight_tensors(net))
    assert got["margin"] == gamma > 0
    assert got["l2"] == pytest.approx((W1.norm() * W2.norm()).item() ** 2 / gamma ** 2)
    spectral = np.linalg.norm(W1.numpy(), 2) * np.linalg.norm(W2.numpy(), 2)
    assert got["spectral"] == pytest.approx(spectral ** 2 / gamma ** 2)
    assert got["l2_path"] == pytest.approx(brute_force_path_sum([W1, W2], 2) / gamma ** 2)
    assert got["l1_path"] == pytest.approx(brute_force_path_sum([W1, W2], 1) ** 2 / gamma ** 2)
    with pytest.raises(ValueError, match="does not fit"):
        norms.measures(net, X, (y + 1) % 3)


@pytest.mark.parametrize("p", [1, 2, float("inf")])
def test_normalized_network_is_homogeneous_and_rescaling_invariant(p):
    torch.manual_seed(3)
    net = models.SmallCNN((3, 4), in_channels=1, image_size=8, num_classes=5, bias=False).double()
    X = torch.randn(20, 1, 8, 8, dtype=torch.float64)
    normalized, rho = norms.normalized_network(net, p)
    with torch.no_grad():
        torch.testing.assert_close(net(X), rho * normalized(X), rtol=1e-10, atol=1e-12)
        assert torch.equal(net(X).argmax(1), normalized(X).argmax(1))
    for _, W in norms.weight_tensors(normalized):
        assert torch.linalg.vector_norm(W, ord=p).item() == pytest.approx(1.0)
    # scale the first layer by a and the second by 1/a: same function, same normalized network
    rescaled = models.SmallCNN((3, 4), in_channels=1, image_size=8, num_classes=5, bias=False).double()
    rescaled.load_state_dict(net.state_dict())
    with torch.no_grad():
        rescaled.features[0].weight.mul_(7.0)
        rescaled.features[2].weight.div_(7.0)
    normalized2, rho2 = norms.normalized_network(rescaled, p)
    assert rho2 == pytest.approx(rho, rel=1e-12)
    for (_, A), (_, B) in zip(norms.weight_tensors(normalized), norms.weight_tensors(normalized2)):
        torch.testing.assert_close(A, B, rtol=1e-12, atol=1e-14)


def test_normalized_loss_is_the_cross_entropy_of_f_over_rho():
    torch.manual_seed(4)
    net = models.MLP(5, [7, 7], 10, bias=False)
    X, y = torch.randn(30, 5), torch.randint(0, 10, (30,))
    _, rho = norms.normalized_network(net)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(net.double()(X.double()) / rho, y).item()
    net.float()
    assert norms.normalized_loss(net, X, y, batch=7) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(np.log(10), abs=0.05)  # f̃ is tiny: the loss sits near ln 10
    with pytest.raises(ValueError, match="bias-free"):
        norms.normalized_network(models.MLP(5, [7], 10))


def test_kendall_tau_matches_scipy_with_ties():
    g = np.random.default_rng(0)
    x = g.integers(0, 5, 40).astype(float)
    y = x + g.normal(0, 2, 40).round()
    assert norms.kendall_tau(x, y) == pytest.approx(scipy.stats.kendalltau(x, y).statistic, rel=1e-12)
    assert norms.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    with pytest.raises(ValueError, match="constant"):
        norms.kendall_tau([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match=r"1 of 3 pairs hold a NaN \(the first at index 1\)"):
        norms.kendall_tau([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])
    # thousands of points: no n × n pair table (the old implementation's O(n²) memory)
    big = g.normal(size=20000)
    assert norms.kendall_tau(big, -big) == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("make", [lambda: models.MLP(6, [8, 8], 3, bias=False),
                                  lambda: models.SmallCNN((4, 4), 1, 3, 8, bias=False, kernel_size=5)])
def test_homogeneity_check_finds_f_equal_to_rho_times_normalized_f(make):
    torch.manual_seed(0)
    net = make()
    X = torch.randn(20, 6) if isinstance(net, models.MLP) else torch.randn(20, 1, 8, 8)
    check = norms.homogeneity_check(net, X)
    assert check["rho"] == pytest.approx(float(norms.layer_norms(net).prod()), rel=1e-12)
    assert check["max_rel_error"] < 1e-12 and check["same_predictions"] == 1.0
    with pytest.raises(ValueError, match="bias-free"):
        norms.homogeneity_check(models.MLP(6, [8], 3), torch.randn(2, 6))


def test_linear_fit_recovers_a_line_and_matches_numpy():
    x = torch.arange(5.0, dtype=torch.float64)
    exact = norms.linear_fit(x, 2 * x + 1)
    assert exact["slope"] == pytest.approx(2) and exact["intercept"] == pytest.approx(1) and exact["r2"] == pytest.approx(1)
    assert norms.linear_fit(x, x)["r2_diagonal"] == pytest.approx(1)
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=30), rng.normal(size=30)
    fit = norms.linear_fit(xs, ys)
    slope, intercept = np.polyfit(xs, ys, 1)
    assert fit["slope"] == pytest.approx(slope) and fit["intercept"] == pytest.approx(intercept)
    assert fit["r2"] == pytest.approx(np.corrcoef(xs, ys)[0, 1] ** 2)
    assert fit["r2_diagonal"] == pytest.approx(1 - ((ys - xs) ** 2).sum() / ((ys - ys.mean()) ** 2).sum())
    with pytest.raises(ValueError, match="constant"):
        norms.linear_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


def test_normalized_loss_with_a_scale_is_the_cross_entropy_of_R_times_normalized_f():
    torch.manual_seed(1)
    net = models.MLP(4, [6], 3, bias=False)
    X, y = torch.randn(10, 4), torch.randint(3, (10,))
    rho = float(norms.layer_norms(net, 1).prod())
    wide = models.clones(net, 1)[0].double()
    by_hand = nn.functional.cross_entropy(7.0 * wide(X.double()) / rho, y).item()
    assert norms.normalized_loss(net, X, y, p=1, scale=7.0) == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        norms.normalized_loss(net, X, y, scale=0.0)


def test_linear_fit_and_kendall_take_pandas_series_with_any_index():
    import pandas as pd
    x = pd.Series([1.0, 2.0, 3.0, 5.0], index=[7, 9, 11, 12])
    y = pd.Series([3.0, 5.0, 7.0, 11.0], index=[3, 4, 5, 6])
    assert norms.linear_fit(x, y)["slope"] == pytest.approx(2.0)
    assert norms.kendall_tau(x, y) == pytest.approx(1.0)


def test_granulated_tau_on_a_factorial_grid():
    # 3 widths × 2 learning rates × 2 seeds; the gap grows with width, falls with the learning rate
    grid = list(itertools.product([16, 32, 64], [0.1, 0.01], [0, 1]))
    width, lr, seed = (list(c) for c in zip(*grid))
    gap = np.array([w / 64 + (0.3 if r == 0.01 else 0.0) + 0.01 * s for w, r, s in grid])
    tracks_width = np.array(width, dtype=float)  # right about width, blind to the learning rate
    result = norms.granulated_tau(tracks_width, gap, {"width": width, "lr": lr}, fixed={"seed": seed})
    assert result.psi["width"] == pytest.approx(1.0)
    assert np.isnan(result.psi["lr"]) and result.undefined["lr"] == 6 and result.groups["lr"] == 0
    # a measure of the gap itself scores 1 on every hyperparameter; its negative −1
    both = norms.granulated_tau(gap, gap, {"width": width, "lr": lr}, fixed={"seed": seed})
    assert both.psi == {"width": 1.0, "lr": 1.0} and both.Psi == 1.0 and both.groups == {"width": 4, "lr": 6}
    assert norms.granulated_tau(-gap, gap, {"width": width, "lr": lr}, fixed={"seed": seed}).Psi == -1.0
    # ψ is a mean of within-group τ: one group ranked right, the other wrong, gives 0
    mixed = np.where(np.array(lr) == 0.1, gap, -gap)
    assert norms.granulated_tau(mixed, gap, {"width": width, "lr": lr}, fixed={"seed": seed}).psi["width"] == 0.0
    # against scipy within each group, by hand
    g = np.random.default_rng(0)
    noisy = gap + g.normal(0, 0.2, len(gap))
    by_hand = np.mean([scipy.stats.kendalltau(noisy[idx], gap[idx]).statistic for idx in
                       (np.flatnonzero((np.array(lr) == r) & (np.array(seed) == s)) for r in (0.1, 0.01) for s in (0, 1))])
    got = norms.granulated_tau(noisy, gap, {"width": width, "lr": lr}, fixed={"seed": seed}).psi["width"]
    assert got == pytest.approx(by_hand, rel=1e-12)


def test_granulated_tau_refuses_a_grid_that_is_not_factorial():
    with pytest.raises(ValueError, match="with {'lr': 2} do not vary 'width'"):
        norms.granulated_tau([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], {"width": [1, 1, 2], "lr": [1, 2, 1]})
    with pytest.raises(ValueError, match="NaN"):
        norms.granulated_tau([1.0, float("nan")], [1.0, 2.0], {"width": [1, 2]})
