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


@pytest.fixture(scope="module")
def decaying():
    """A 300 × 300 symmetric matrix shaped like a trained net's Hessian: eigenvalues decaying as a power law
    (``40·i^−1.5``) into a bulk near zero, some of it negative."""
    torch.manual_seed(1)
    n = 300
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    eig = 40.0 * torch.arange(1, n + 1, dtype=torch.float64) ** -1.5 + 0.01 * torch.randn(n, dtype=torch.float64)
    return Q @ torch.diag(eig) @ Q.T, eig


def _over_seeds(fn, A, seeds, **options):
    theta = torch.zeros(len(A), dtype=torch.float64)
    runs = [fn(quadratic(A), theta, generator=torch.Generator().manual_seed(s), **options) for s in range(seeds)]
    values = np.array([r.value for r in runs])
    return values, np.array([r.se for r in runs])


@pytest.mark.parametrize("method", curvature.TRACE_METHODS)
def test_trace_estimators_are_unbiased_and_their_errors_honest(decaying, method):
    A, eig = decaying
    truth = float(eig.sum())
    values, errors = _over_seeds(curvature.hessian_trace, A, 60, samples=60, method=method)
    spread = values.std(ddof=1)
    assert abs(values.mean() - truth) < 4 * spread / math.sqrt(len(values))
    # the reported standard error matches the spread over seeds (within sampling error of 60 seeds)
    assert 0.6 < np.median(errors) / spread < 1.6


def test_deflation_is_far_tighter_than_hutchinson_for_a_decaying_spectrum(decaying):
    A, _ = decaying
    spreads = {m: _over_seeds(curvature.hessian_trace, A, 30, samples=60, method=m)[0].std(ddof=1)
               for m in curvature.TRACE_METHODS}
    assert spreads["krylov"] < spreads["xtrace"] < spreads["hutch++"] < spreads["hutchinson"] / 5
    assert spreads["xtrace"] < spreads["hutchinson"] / 20


def test_trace_is_exact_for_a_low_rank_matrix_and_a_full_budget(spd):
    torch.manual_seed(2)
    B = torch.randn(60, 4, dtype=torch.float64)
    A = B @ B.T  # rank 4: five test vectors span its range
    theta = torch.zeros(60, dtype=torch.float64)
    for method in ("krylov", "xtrace", "hutch++"):
        value, se = curvature.hessian_trace(quadratic(A), theta, samples=15, method=method,
                                            generator=torch.Generator().manual_seed(0))
        assert value == pytest.approx(float(A.trace()), rel=1e-9) and se < 1e-9
    A, exact = spd
    assert curvature.hessian_trace(quadratic(A), theta, samples=60) == (pytest.approx(exact.sum(), rel=1e-12), 0.0)


def test_trace_and_frobenius_of_a_tiny_mlp_against_its_dense_hessian(tiny_net):
    f, theta = tiny_net
    H = curvature.hessian(f, theta)
    assert theta.numel() == 49  # more than the 24 products below: the estimates sample
    for method in curvature.TRACE_METHODS:
        value, se = curvature.hessian_trace(f, theta, samples=24, method=method,
                                            generator=torch.Generator().manual_seed(3))
        assert abs(value - float(H.trace())) < 4 * se + 1e-9
    for method in curvature.FROBENIUS_METHODS:
        value, se = curvature.hessian_frobenius(f, theta, samples=24, method=method,
                                                generator=torch.Generator().manual_seed(3))
        assert abs(value - float(H.pow(2).sum())) < 4 * se + 1e-9


@pytest.mark.parametrize("method", curvature.FROBENIUS_METHODS)
def test_frobenius_estimators_are_unbiased_and_their_errors_honest(decaying, method):
    A, eig = decaying
    truth = float(eig.pow(2).sum())
    values, errors = _over_seeds(curvature.hessian_frobenius, A, 60, samples=60, method=method)
    spread = values.std(ddof=1)
    assert abs(values.mean() - truth) < 4 * spread / math.sqrt(len(values))
    assert 0.5 < np.median(errors) / spread < 2
    if method != "hutchinson":  # the top of the spectrum is taken exactly: a small spread
        assert spread < 0.02 * truth


def test_estimators_refuse_bad_budgets_and_methods(spd):
    A, _ = spd
    theta = torch.zeros(60, dtype=torch.float64)
    with pytest.raises(ValueError, match="method must be one of"):
        curvature.hessian_trace(quadratic(A), theta, method="girard")
    with pytest.raises(ValueError, match="at least 4 products"):
        curvature.hessian_trace(quadratic(A), theta, samples=3)
    with pytest.raises(ValueError, match="method must be one of krylov, hutch"):
        curvature.hessian_frobenius(quadratic(A), theta, method="xtrace")


def test_operator_products_batched_and_one_by_one_agree(tiny_net):
    f, theta = tiny_net
    H = curvature.hessian(f, theta, memory=1)  # one column per pass
    torch.testing.assert_close(H, curvature.hessian(f, theta), rtol=1e-12, atol=1e-14)
    V = torch.randn(70, theta.numel(), dtype=torch.float64)
    for block in ("auto", 1, 8):
        op = curvature.HessianOperator(f, theta, block=block)
        torch.testing.assert_close(op.matmat(V), V @ H.T, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op @ V[0], H @ V[0], rtol=1e-10, atol=1e-12)
        assert op.products == 71
    op = curvature.HessianOperator(f, theta)
    op.matmat(V)
    assert op.batched in (True, False)  # the first block decided
    torch.testing.assert_close(op.gradient, curvature.gradient(f, theta))


def test_operator_of_a_function_linear_in_theta_gives_zeros():
    c = torch.randn(5, dtype=torch.float64)
    op = curvature.HessianOperator(lambda T: T @ c, torch.zeros(5, dtype=torch.float64))
    assert torch.equal(op @ torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(op.gradient, c)


def test_spectral_density_runs_each_probe_as_plain_lanczos_would(spd):
    A, _ = spd
    theta = torch.zeros(60, dtype=torch.float64)
    slq = curvature.spectral_density(quadratic(A), theta, probes=3, steps=12, generator=torch.Generator().manual_seed(4))
    starts = torch.randn(3, 60, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for i, v0 in enumerate(starts):
        vals, S, _, _ = curvature.lanczos(lambda v: A @ v, v0, 12)
        torch.testing.assert_close(slq.nodes[i], vals, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(slq.weights[i], S[0] ** 2, rtol=1e-7, atol=1e-9)


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
