import pytest
import torch

from genviz_lib import models


def test_swiss_roll_net_matches_the_paper():
    net = models.swiss_roll_net()
    assert models.count_parameters(net) == 3614
    assert [layer.out_features for layer in net.linears] == [23, 16, 26, 32, 28, 31, 1]
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in net.linears)  # zero biases, Glorot weights
    w = net.linears[1].weight.detach()
    bound = (6 / (23 + 16)) ** 0.5
    assert float(w.abs().max()) <= bound


def test_resnet20_has_the_papers_parameter_count():
    net = models.resnet20()
    assert models.count_parameters(net) == 269_722
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_other_architectures_shapes():
    assert models.count_parameters(models.minefield_net()) == 2 * 25 + 25 + 4 * (25 * 25 + 25) + 25 * 2 + 2 == 2727
    assert models.count_parameters(models.minefield_net(4)) == 2077
    assert models.count_parameters(models.rings_net()) == (2 * 100 + 100) + 8 * (100 * 100 + 100) + (100 * 2 + 2)
    cnn = models.SmallCNN((8, 16), in_channels=1, image_size=14, bias=False)
    assert cnn(torch.randn(3, 1, 14, 14)).shape == (3, 10)
    assert not any("bias" in n for n, _ in cnn.named_parameters())
    vgg = models.VGG("vgg13", in_channels=3, width=1 / 8)
    assert vgg(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    mlp = models.MLP(64, [32, 32], 10, bias=False)
    assert models.count_parameters(mlp) == 64 * 32 + 32 * 32 + 32 * 10


def test_bias_free_nets_are_positively_homogeneous():
    torch.manual_seed(0)
    for net, x in ((models.MLP(10, [20, 20], 3, bias=False), torch.randn(5, 10)),
                   (models.SmallCNN((4, 8), image_size=8, bias=False), torch.randn(5, 1, 8, 8))):
        out = net(x)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(2.0)
        depth = len(list(net.parameters()))
        torch.testing.assert_close(net(x), out * 2.0 ** depth)


def test_ensemble_members_compute_what_they_computed_alone():
    torch.manual_seed(0)
    nets = [models.swiss_roll_net() for _ in range(4)]
    ens = models.MLPEnsemble(nets)
    x = torch.randn(50, 2)
    out = ens(x)
    assert out.shape == (4, 50, 1)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(x))
        torch.testing.assert_close(ens.member(k)(x), net(x))
    assert models.count_parameters(ens) == 4 * 3614


def test_ensemble_takes_images_and_per_member_batches():
    torch.manual_seed(0)
    nets = [models.MLP(16, [8], 3, bias=False) for _ in range(2)]
    ens = models.MLPEnsemble(nets)
    images = torch.randn(5, 1, 4, 4)  # shared image batch, flattened like MLP.forward does
    out = ens(images)
    assert out.shape == (2, 5, 3)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(images))
    own = torch.randn(2, 5, 16)  # one batch per member
    for k, net in enumerate(nets):
        torch.testing.assert_close(ens(own)[k], net(own[k]))


def test_ensemble_rejects_mixed_architectures():
    with pytest.raises(ValueError, match="same|layer sizes"):
        models.MLPEnsemble([models.swiss_roll_net(), models.minefield_net()])
    with pytest.raises(ValueError, match="at least one member"):
        models.MLPEnsemble([])


def test_clones_share_weights_not_storage():
    net = models.swiss_roll_net()
    a, b = models.clones(net, 2)
    for p, q, r in zip(net.parameters(), a.parameters(), b.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r)
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(net.parameters()))


def test_quadratic_features_are_pixels_and_pairwise_products():
    feats = models.QuadraticFeatures(in_channels=1, image_size=4)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = feats(x)
    p = torch.nn.functional.avg_pool2d(x, 2).flatten()  # 4 pooled pixels: 2.5, 4.5, 10.5, 12.5
    assert out.shape == (1, 4 + 10) and feats.out_features == 14
    torch.testing.assert_close(out[0, :4], p)
    expected = torch.tensor([p[a] * p[b] for a in range(4) for b in range(a, 4)])
    torch.testing.assert_close(out[0, 4:], expected)
    assert models.count_parameters(models.quadratic_linear_model(1, 28, 10)) == 195_030


def test_min_norm_quadratic_model_interpolates_with_the_least_norm():
    torch.manual_seed(0)
    X = torch.rand(12, 1, 4, 4)
    y = torch.randint(0, 3, (12,))
    model = models.min_norm_quadratic_model(X, y, num_classes=3)
    F = model[0](X).double()
    Y = torch.nn.functional.one_hot(y, 3).double()
    with torch.no_grad():
        torch.testing.assert_close(model(X).double(), Y, atol=2e-4, rtol=0)
    # the pseudo-inverse solution is the least-norm one; it must coincide with the kernel computation
    torch.testing.assert_close(model[1].weight.double().T, torch.linalg.pinv(F) @ Y, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="square images"):
        models.min_norm_quadratic_model(torch.rand(3, 16), torch.zeros(3, dtype=torch.long))


def test_monomial_features_match_scikit_learn_and_the_min_norm_model_matches_its_least_squares():
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import PolynomialFeatures

    X = torch.randn(30, 6, dtype=torch.float64)
    features = models.MonomialFeatures(6, degree=3)
    reference = PolynomialFeatures(3, include_bias=False).fit(X.numpy())
    assert features.out_features == reference.n_output_features_ == 6 + 21 + 56
    torch.testing.assert_close(features(X), torch.as_tensor(reference.transform(X.numpy())))
    y = torch.arange(30) % 4
    model = models.min_norm_polynomial_model(X.float(), y, degree=3, num_classes=4)
    assert bool((model(X.float()).argmax(1) == y).all())  # 83 features ≥ 30 examples: it fits every one
    # scikit-learn's least squares on an under-determined system is the least-norm solution too
    least = LinearRegression(fit_intercept=False).fit(features(X.float().double()).numpy(),
                                                      torch.nn.functional.one_hot(y, 4).double().numpy())
    torch.testing.assert_close(model[1].weight.double(), torch.as_tensor(least.coef_), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="cannot fit 100 examples exactly"):
        models.min_norm_polynomial_model(torch.randn(100, 6), torch.arange(100) % 4, degree=2, num_classes=4)


def test_signal_cnn_halves_the_length_at_each_layer():
    net = models.SignalCNN((8, 8, 8), length=40, kernel_size=5)
    assert net.classifier.in_features == 8 * 5  # 40 → 20 → 10 → 5
    assert net(torch.randn(3, 40)).shape == (3, 10)
    with pytest.raises(ValueError, match="length 40, got 39"):
        net(torch.randn(3, 39))


def test_initialize_schemes():
    net = models.MLP(400, [300], 10)
    models.initialize(net, "he_normal", seed=0)
    assert net[0].weight.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.02)
    models.initialize(net, "uniform", scale=0.1, seed=0)
    w = net[0].weight
    assert w.min().item() >= 0 and w.max().item() <= 0.1 and w.mean().item() == pytest.approx(0.05, rel=0.02)
    models.initialize(net, "normal", scale=0.1, seed=0)
    assert net[2].weight.std().item() == pytest.approx(0.1, rel=0.05)
    assert net[0].bias.abs().max().item() == 0
    assert models.describe_initialization("he_normal") == "N(0, 2/fan_in)"
    with pytest.raises(ValueError, match="unknown initialization"):
        models.initialize(net, "orthogonal")


def test_rescale_keeps_the_function_and_moves_the_weights():
    from genviz_lib import landscape

    torch.manual_seed(0)
    net = models.swiss_roll_net()
    x = torch.randn(50, 2) * 10
    big = models.rescale(net, 2, 10.0)
    torch.testing.assert_close(big(x), net(x), rtol=1e-5, atol=1e-5)
    norm = lambda m, i: m.linears[i].weight.norm().item()
    assert norm(big, 2) == pytest.approx(10 * norm(net, 2), rel=1e-6)
    assert norm(big, 3) == pytest.approx(norm(net, 3) / 10, rel=1e-6)
    # the filter-normalized direction (same draws) is the rescaled direction: slices coincide
    d = landscape.filter_normalized_direction(net, torch.Generator().manual_seed(1))
    d_big = landscape.filter_normalized_direction(big, torch.Generator().manual_seed(1))
    moved = landscape.unflatten(models.clones(net, 1)[0], landscape.flatten(net) + 0.3 * d)
    moved_big = landscape.unflatten(models.clones(big, 1)[0], landscape.flatten(big) + 0.3 * d_big)
    torch.testing.assert_close(moved_big(x), moved(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="positive"):
        models.rescale(net, 0, -2.0)
    with pytest.raises(ValueError, match="followed by another"):
        models.rescale(net, 6, 2.0)


def test_poggio_convnet_is_appendix_b_net():
    net = models.poggio_convnet()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [(64, (5, 5), (2, 2), (2, 2))] * 2
    assert net.classifier.in_features == 64 * 8 * 8 and net.classifier.out_features == 10
    assert all(p.ndim >= 2 for p in net.parameters())  # bias-free
    assert models.count_parameters(net) == 3 * 64 * 25 + 64 * 64 * 25 + 64 * 8 * 8 * 10 == 148160
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="odd"):
        models.SmallCNN(kernel_size=4)
