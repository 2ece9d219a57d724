"""The written-out Hessian-vector products of sequential nets against autograd's dense Hessian."""

import pytest
import torch
from torch import nn

from genviz_lib import curvature, landscape, models
from genviz_lib.sequential_curvature import SequentialCurvature


def _dense(f, theta):
    """The Hessian by ``torch.autograd.functional.hessian`` of the plain loss (no engine of ours involved)."""
    return torch.autograd.functional.hessian(curvature._scalar(f), theta)


def _case(kind):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(60, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(4)
    if kind == "swiss":  # one logit, six ReLU layers (the swiss-roll net's shape, narrower)
        net, y, loss = models.MLP(2, [6, 4, 5, 7, 5, 6], 1), (X[:, 0] * X[:, 1] > 0).long(), "ce"
    elif kind == "softmax":
        net, y, loss = models.MLP(2, [7, 5], 3), torch.randint(0, 3, (60,), generator=g), "ce"
    elif kind == "tanh-mse":  # tanh's second derivative, a layer without bias, two outputs
        net = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 4, bias=False), nn.ReLU(), nn.Linear(4, 2))
        y, loss = torch.randn(60, 2, generator=g, dtype=torch.float64), "mse"
    elif kind == "flatten-images":  # images flattened by an nn.Flatten, two activations in a row
        X = torch.randn(60, 1, 2, 3, generator=g, dtype=torch.float64)
        net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Tanh(), nn.Identity(), nn.Linear(5, 3))
        y, loss = torch.randint(0, 3, (60,), generator=g), "ce"
    net = net.double()
    for p in net.parameters():  # nonzero biases, so that every term of the products is exercised
        p.data += 0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64)
    return net, X, y, loss


@pytest.mark.parametrize("kind", ["swiss", "softmax", "tanh-mse", "flatten-images"])
@pytest.mark.parametrize("data_chunk", [None, 25])
def test_products_are_columns_of_the_dense_hessian(kind, data_chunk):
    net, X, y, loss = _case(kind)
    f = landscape.objective(net, X, y, loss=loss, data_chunk=data_chunk)
    theta = landscape.flatten(net)
    H = _dense(f, theta)
    assert H.abs().max() > 1e-3
    op = curvature.HessianOperator(f, theta)
    assert op.engine == "explicit"
    V = torch.randn(4, theta.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scale = float(H.abs().max())
    assert float((op.matmat(V, block=4) - V @ H).abs().max()) < 1e-12 * scale * theta.numel()
    assert float((op @ V[0] - H @ V[0]).abs().max()) < 1e-12 * scale * theta.numel()
    assert torch.allclose(curvature.hessian(f, theta), H, rtol=0, atol=1e-12 * scale)
    g = torch.func.grad(curvature._scalar(f))(theta)
    assert torch.allclose(op.gradient, g, rtol=1e-12, atol=1e-15)


def test_the_engines_agree_in_float32():
    net = models.MLP(196, [32], 10)
    X = torch.randn(300, 196, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (300,), generator=torch.Generator().manual_seed(2))
    f = landscape.objective(net, X, y)
    theta = landscape.flatten(net)
    V = torch.randn(3, theta.numel(), generator=torch.Generator().manual_seed(0))
    fast = curvature.HessianOperator(f, theta)
    slow = curvature.HessianOperator(f, theta, engine="autograd")
    assert (fast.engine, slow.engine) == ("explicit", "autograd")
    ref = slow.matmat(V, block=1)
    assert float((fast.matmat(V) - ref).abs().max()) < 1e-5 * float(ref.abs().max())


class _Doubled(nn.Sequential):
    def forward(self, x):
        return 2 * super().forward(x)


def _unsupported():
    X = torch.randn(20, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 2)).double()
    yield "convolution", landscape.objective(cnn, X, y)
    Xf = X.flatten(1)
    yield "custom forward", landscape.objective(_Doubled(nn.Linear(64, 2)).double(), Xf, y)
    yield "custom loss", landscape.objective(models.MLP(64, [4], 2).double(), Xf, y,
                                             loss=lambda out, t: out.pow(2).sum(-1))
    frozen = models.MLP(64, [4], 2).double()
    frozen[0].bias.requires_grad_(False)
    yield "frozen parameter", landscape.objective(frozen, Xf, y)
    yield "sigmoid", landscape.objective(nn.Sequential(nn.Linear(64, 3), nn.Sigmoid(), nn.Linear(3, 2)).double(), Xf, y)


@pytest.mark.parametrize("why", ["convolution", "custom forward", "custom loss", "frozen parameter", "sigmoid"])
def test_anything_else_uses_autograd(why):
    f = dict(_unsupported())[why]
    theta = landscape.flatten(f.model)
    assert SequentialCurvature.build(f, theta) is None
    op = curvature.HessianOperator(f, theta)
    assert op.engine == "autograd"
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    H = _dense(f, theta)
    assert torch.allclose(op @ v, H @ v, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="explicit engine needs"):
        curvature.HessianOperator(f, theta, engine="explicit")


def test_engine_is_checked():
    net, X, y, loss = _case("softmax")
    with pytest.raises(ValueError, match="engine must be"):
        curvature.HessianOperator(landscape.objective(net, X, y), landscape.flatten(net), engine="jvp")
