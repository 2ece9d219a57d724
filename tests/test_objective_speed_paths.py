"""The objective's fused evaluation path (a convolution and its ReLU as one oneDNN call) against plain forward passes."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from genviz_lib import curvature, landscape, models
from genviz_lib.data import Data

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN (mkldnn)")


def plain_losses(net, X, y, Theta):
    """Write each vector into the model and run it: the reference every path must match."""
    out = []
    with torch.no_grad():
        for point in Theta:
            landscape.unflatten(net, point)
            out.append(F.cross_entropy(net(X), y).item())
    return np.array(out)


def points(net, k=5, scale=0.3, seed=0):
    theta = landscape.flatten(net)
    gen = torch.Generator().manual_seed(seed)
    return theta, theta + scale * torch.randn(k, theta.numel(), generator=gen)


def test_fused_surface_of_a_small_cnn_matches_plain_forward_passes():
    torch.manual_seed(0)
    net = models.SmallCNN((4, 8, 8), in_channels=1, image_size=12).eval()
    X, y = torch.randn(37, 1, 12, 12), torch.randint(0, 10, (37,))
    theta, Theta = points(net)
    f = landscape.objective(net, X, y, data_chunk=10, chunk=2)
    assert f.fused and f.strategy == "loop"
    plain = landscape.objective(net, X, y, fuse=False)
    assert not plain.fused
    with torch.no_grad():
        got, reference = f(Theta).numpy(), plain(Theta).numpy()
    expected = plain_losses(net, X, y, Theta)
    landscape.unflatten(net, theta)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(got, reference, rtol=1e-6)
    # a 2-D slice through the fused objective is the same surface
    d1, d2 = landscape.filter_normalized_plane(net, torch.Generator().manual_seed(1))
    axis = landscape.grid(-1.0, 1.0, 5).float()
    torch.testing.assert_close(landscape.slice_2d(f, theta, d1, d2, axis, axis),
                               landscape.slice_2d(plain, theta, d1, d2, axis, axis), rtol=1e-6, atol=1e-7)
    # the model is left as it was: its own modules, weights and forward pass
    assert type(net.features) is nn.Sequential and torch.equal(landscape.flatten(net), theta)


def test_fused_path_of_a_model_traced_only_in_parts():
    # SignalCNN checks its input's length in Python, so only its children are traced and fused
    torch.manual_seed(0)
    net = models.SignalCNN((6, 6), length=20).eval()
    X, y = torch.randn(29, 20), torch.randint(0, 10, (29,))
    _, Theta = points(net)
    f = landscape.objective(net, X, y)
    assert f.fused
    with torch.no_grad():
        got = f(Theta).numpy()
    np.testing.assert_allclose(got, plain_losses(net, X, y, Theta), rtol=1e-5)
    g = landscape.metrics(net, {"train": Data(X, y), "test": Data(X[:9], y[:9])})
    np.testing.assert_allclose(g(Theta)["train_loss"].numpy(), got, rtol=1e-6)


class FunctionalRelus(nn.Module):
    """ReLUs written three ways, and one convolution whose output is used twice (not fused)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.d = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.relu(self.a(x))
        x = torch.relu(self.b(x))
        x = self.c(x).relu()
        skip = self.d(x)
        x = F.relu(skip) + skip
        return self.head(x.flatten(1))


def test_relus_written_as_functions_and_methods_are_fused_and_shared_outputs_are_not():
    torch.manual_seed(0)
    net = FunctionalRelus()
    traced = landscape.fused_conv_relu(net)
    calls = [n for n in traced.graph.nodes if n.op == "call_function" and n.target is landscape._conv_relu]
    on_data = [m for m in traced.modules() if isinstance(m, landscape._DataConvReLU)]
    assert len(calls) == 2 and len(on_data) == 1  # a (on the data), b, c; d's output is also used by the sum
    X, y = torch.randn(11, 1, 8, 8), torch.randint(0, 3, (11,))
    _, Theta = points(net, scale=0.2)
    f = landscape.objective(net, X, y)
    assert f.fused
    with torch.no_grad():
        np.testing.assert_allclose(f(Theta).numpy(), plain_losses(net, X, y, Theta), rtol=1e-5)


def data_convs(f):
    return [m for m in f._fused_model.modules() if isinstance(m, landscape._DataConvReLU)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", ["2d", "1d", "3d"])
def test_a_convolution_on_the_data_by_its_patches_is_the_convolution(shape, bias):
    torch.manual_seed(0)
    if shape == "2d":
        layer, X = nn.Conv2d(2, 5, (3, 5), stride=(2, 1), padding=(1, 2), bias=bias), torch.randn(7, 2, 11, 9)
    elif shape == "1d":
        layer, X = nn.Conv1d(1, 6, 5, stride=2, padding=2, dilation=2, bias=bias), torch.randn(7, 1, 30)
    else:
        layer, X = nn.Conv3d(1, 3, 3, stride=2, padding=1, bias=bias), torch.randn(4, 1, 6, 7, 5)
    m = landscape._DataConvReLU(layer)
    w, b = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
    expected = torch.relu(layer(X)).detach()
    torch.testing.assert_close(m.direct(X, w, b), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m.by_columns(X, w, b), expected, rtol=1e-6, atol=1e-6)
    cols = m.patches(X)
    assert m.patches(X) is cols  # kept for the same input
    assert m.patches(X.clone()) is not cols  # cut again for another tensor
    Y = X.clone()
    m.patches(Y)
    Y.mul_(2)  # changed in place: cut again
    torch.testing.assert_close(m.by_columns(Y, w, b), torch.relu(layer(Y)).detach(), rtol=1e-6, atol=1e-6)
    m.max_bytes = 0  # too large to keep: the oneDNN call serves it
    assert m.patches(X.clone()) is None
    torch.testing.assert_close(m.by_columns(X, w, b), expected, rtol=1e-6, atol=1e-6)


def test_objective_with_the_data_convolution_by_patches_over_several_data_chunks():
    torch.manual_seed(0)
    net = models.SmallCNN((4, 8), in_channels=1, image_size=12).eval()
    X, y = torch.randn(37, 1, 12, 12), torch.randint(0, 10, (37,))
    _, Theta = points(net)
    f = landscape.objective(net, X, y, data_chunk=10, chunk=2)
    (m,) = data_convs(f)
    m.columns = True  # whatever the timing chose
    with torch.no_grad():
        np.testing.assert_allclose(f(Theta).numpy(), plain_losses(net, X, y, Theta), rtol=1e-5)
        m.columns = False
        np.testing.assert_allclose(f(Theta).numpy(), plain_losses(net, X, y, Theta), rtol=1e-5)


class TwoStages(nn.Module):
    """Not traceable as a whole (a check on the input in Python); its second stage starts with a convolution
    whose input is an activation, not the data."""

    def __init__(self):
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU())
        self.second = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))

    def forward(self, x):
        if x.shape[-1] != 8:
            raise ValueError("8×8 images only")
        return self.second(self.first(x))


def test_only_convolutions_fed_by_the_data_are_computed_from_patches():
    torch.manual_seed(0)
    net = TwoStages()
    X, y = torch.randn(20, 1, 8, 8), torch.randint(0, 3, (20,))
    f = landscape.objective(net, X, y)
    assert f.fused
    first, second = data_convs(f)  # both take their own graph's input
    landscape._choose_columns(f._fused_model, X)
    assert not second.columns  # its input is an activation: it changes with the weights
    first.columns = True
    _, Theta = points(net, scale=0.2)
    with torch.no_grad():
        np.testing.assert_allclose(f(Theta).numpy(), plain_losses(net, X, y, Theta), rtol=1e-5)


def test_derivatives_go_through_the_plain_path():
    torch.manual_seed(0)
    net = models.SmallCNN((3, 4), in_channels=1, image_size=8, num_classes=5)
    X, y = torch.randn(13, 1, 8, 8), torch.randint(0, 5, (13,))
    theta, Theta = points(net, k=3, scale=0.1)
    fused, plain = landscape.objective(net, X, y), landscape.objective(net, X, y, fuse=False)
    assert fused.fused
    torch.testing.assert_close(curvature.gradient(fused, theta), curvature.gradient(plain, theta))
    # reverse mode through f itself
    T = Theta.clone().requires_grad_(True)
    fused(T).sum().backward()
    U = Theta.clone().requires_grad_(True)
    plain(U).sum().backward()
    torch.testing.assert_close(T.grad, U.grad)
    # torch.func transforms: forward mode and a gradient
    v = torch.randn_like(theta)
    _, jvp_fused = torch.func.jvp(lambda t: fused(t[None])[0], (theta,), (v,))
    _, jvp_plain = torch.func.jvp(lambda t: plain(t[None])[0], (theta,), (v,))
    torch.testing.assert_close(jvp_fused, jvp_plain)
    torch.testing.assert_close(torch.func.grad(lambda t: fused(t[None])[0])(theta), curvature.gradient(plain, theta))


def test_when_the_objective_does_not_fuse():
    torch.manual_seed(0)
    cnn = models.SmallCNN((3, 4), in_channels=1, image_size=8, num_classes=5)
    X, y = torch.randn(7, 1, 8, 8), torch.randint(0, 5, (7,))
    assert not landscape.objective(cnn, X, y, strategy="vmap").fused
    assert not landscape.objective(cnn, X, y, train_mode=True).fused
    assert not landscape.objective(models.swiss_roll_net(), torch.randn(5, 2), torch.zeros(5, dtype=torch.long)).fused
    with pytest.raises(ValueError, match="only the 'loop' strategy"):
        landscape.objective(cnn, X, y, strategy="vmap", fuse=True)
    with pytest.raises(ValueError, match="float32"):
        landscape.objective(models.SmallCNN((3, 4), in_channels=1, image_size=8).double(), X.double(), y, fuse=True)
    vgg = models.VGG([4, "M"], in_channels=1, image_size=4, num_classes=3)  # convolution → BatchNorm → ReLU
    with pytest.raises(ValueError, match="no convolution followed by a ReLU"):
        landscape.objective(vgg, torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2]), fuse=True)
    with pytest.raises(ValueError, match="fuse must be"):
        landscape.objective(cnn, X, y, fuse="always")
