import math

import numpy as np
import pytest
import torch

from genviz_lib import curvature, landscape, models


def quadratic(A):
    return lambda T: 0.5 * torch.einsum("...i,ij,...j->...", T, A, T)


@pytest.fixture(scope="module")
def spd():
    torch.manual_seed(0)
    n = 60
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    eig = torch.cat([torch.tensor([50.0, 30.0, 20.0, 12.0, 8.0], dtype=torch.float64),
                     torch.linspace(-0.5, 3.0, n - 5, dtype=torch.float64)])
    A = Q @ torch.diag(eig) @ Q.T
    return A, np.linalg.eigh(A.numpy())[0][::-1].copy()


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = models.MLP(2, [5, 4], 2).double()
    X = torch.randn(30, 2, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).long()
    f = landscape.objective(net, X, y)
    return f, landscape.flatten(net)


def test_hvp_and_dense_hessian_of_a_quadratic(spd):
    A, _ = spd
    theta = torch.randn(60, dtype=torch.float64)
    torch.testing.assert_close(curvature.hessian(quadratic(A), theta), A)
    v = torch.randn(3, 60, dtype=torch.float64)
    torch.testing.assert_close(curvature.hvp(quadratic(A), theta, v), v @ A)


def test_dense_hessian_of_a_tiny_mlp_matches_finite_differences(tiny_net):
    f, theta = tiny_net
    H = curvature.hessian(f, theta)
    torch.testing.assert_close(H, H.T, rtol=1e-8, atol=1e-10)
    eps = 1e-5
    n = theta.numel()
    fd = torch.stack([(curvature.gradient(f, theta + eps * e) - curvature.gradient(f, theta - eps * e)) / (2 * eps)
                      for e in torch.eye(n, dtype=torch.float64)])
    torch.testing.assert_close(H, fd, rtol=1e-5, atol=1e-7)
    v = torch.randn(n, dtype=torch.float64)
    torch.testing.assert_close(curvature.hvp(f, theta, v), H @ v)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalues_agree_with_eigh(spd, method):
    A, exact = spd
    info = curvature.top_eigenvalues(quadratic(A), torch.zeros(60, dtype=torch.float64), k=4, method=method,
                                     tol=1e-8, generator=torch.Generator().manual_seed(0), return_info=True)
    np.testing.assert_allclose(info.values.numpy(), exact[:4], rtol=1e-6)
    assert (info.residuals <= 1e-3 * info.values.abs()).all()
    assert info.hvps > 0


def test_top_eigenvalues_of_a_tiny_mlp(tiny_net):
    f, theta = tiny_net
    exact = np.linalg.eigh(curvature.hessian(f, theta).numpy())[0][::-1]
    got = curvature.top_eigenvalues(f, theta, k=3, tol=1e-10, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(got.numpy(), exact[:3], rtol=1e-6)


def test_hutchinson_trace(spd):
    A, exact = spd
    estimate, stderr = curvature.hessian_trace(quadratic(A), torch.zeros(60, dtype=torch.float64), samples=400,
                                               generator=torch.Generator().manual_seed(0))
    assert abs(estimate - exact.sum()) < 4 * stderr
    assert stderr < 0.1 * abs(exact.sum())


def test_spectral_density_moments(spd):
    A, exact = spd
    theta = torch.zeros(60, dtype=torch.float64)
    full = curvature.spectral_density(quadratic(A), theta, probes=4, steps=60, generator=torch.Generator().manual_seed(0))
    # with as many steps as dimensions every eigenvalue is a node
    assert full.nodes.max().item() == pytest.approx(exact[0], rel=1e-8)
    assert full.nodes.min().item() == pytest.approx(exact[-1], rel=1e-6)
    grid = torch.linspace(-5, 60, 2000, dtype=torch.float64)
    assert float(full.density(grid, sigma=0.5).sum() * (grid[1] - grid[0])) == pytest.approx(1.0, abs=1e-2)
    # the first moment is exact per probe for any number of steps; probes average vᵀAv/‖v‖² to tr A / n
    many = curvature.spectral_density(quadratic(A), theta, probes=150, steps=8, generator=torch.Generator().manual_seed(1))
    per_probe_sd = math.sqrt(2 * (exact ** 2).sum()) / 60  # sd of vᵀAv/‖v‖² for Gaussian v, about
    assert abs(many.moment(lambda x: x) - exact.mean()) < 4 * per_probe_sd / math.sqrt(150)


def test_log_volume_proxy():
    assert curvature.log_volume_proxy(torch.tensor([4.0, 1.0, 2.0]), k=2) == pytest.approx(math.log(8.0))
    with pytest.raises(ValueError, match="positive eigenvalues"):
        curvature.log_volume_proxy(torch.tensor([3.0, -1.0]), k=2)


def test_frobenius_estimate(spd):
    A, exact = spd
    estimate, stderr = curvature.frobenius_estimate(quadratic(A), torch.zeros(60, dtype=torch.float64),
                                                    samples=400, generator=torch.Generator().manual_seed(0))
    truth = float((exact ** 2).sum())
    assert abs(estimate - truth) < 4 * stderr and stderr < 0.1 * truth


def test_unknown_eigen_method_is_refused_before_any_work():
    calls = []
    f = lambda T: calls.append(1) or quadratic(torch.eye(3, dtype=torch.float64))(T)
    with pytest.raises(ValueError, match="method must be 'lanczos' or 'power'"):
        curvature.top_eigenvalues(f, torch.zeros(3, dtype=torch.float64), k=1, method="arnoldi")
    assert not calls


def test_power_iteration_warns_when_it_runs_out_of_hvps(spd):
    A, _ = spd
    with pytest.warns(UserWarning, match="power iteration used its 5 HVPs"):
        curvature.top_eigenvalues(quadratic(A), torch.zeros(60, dtype=torch.float64), k=3, method="power",
                                  tol=1e-10, max_hvps=5, generator=torch.Generator().manual_seed(0))
