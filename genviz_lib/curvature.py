"""Curvature: Hessian-vector products and what they buy (Wu et al. 2017, §5.2; Ghorbani et al. 2019).

All functions take an objective ``f(Θ) → [b]`` (see :mod:`genviz_lib.landscape`) and a point
``θ: [n]``; the Hessian is never formed except by :func:`hessian`, meant for small nets and tests.

- :func:`hvp`: ``H v`` by forward-over-reverse differentiation (``torch.func.jvp`` of ``grad``).
- :func:`top_eigenvalues`: the largest eigenvalues by Lanczos with full reorthogonalization, or by
  deflated power iteration; residuals and the number of HVPs on request.
- :func:`hessian_trace`: Hutchinson's estimator with its standard error.
- :func:`spectral_density`: stochastic Lanczos quadrature.
- :func:`log_volume_proxy`: Wu et al.'s ``V(k) = Σ_{i≤k} log λ_i`` (eq. 13).
- :func:`frobenius_estimate`: Wu et al.'s finite-difference estimate of ``‖H‖_F²`` (eq. 14).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
from torch.func import grad, jvp, vmap

from .landscape import Objective, loss_at


def _scalar(f: Objective):
    return lambda t: f(t[None])[0]


def hvp(f: Objective, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``H(θ) v`` for one vector ``v: [n]`` or a batch ``V: [k, n]`` (returns the same shape)."""
    g = grad(_scalar(f))
    one = lambda u: jvp(g, (theta,), (u,))[1]
    return vmap(one)(v) if v.ndim == 2 else one(v)


def hessian(f: Objective, theta: torch.Tensor) -> torch.Tensor:
    """The dense Hessian ``[n, n]`` (``n`` HVPs at once): for small models and for checking the rest."""
    return hvp(f, theta, torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device))


def gradient(f: Objective, theta: torch.Tensor) -> torch.Tensor:
    """``∇f(θ)``."""
    return grad(_scalar(f))(theta)


@dataclasses.dataclass
class Eigen:
    """Eigenvalues (descending), eigenvectors ``[k, n]``, residual norms ``‖Hv − λv‖`` and HVP count."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    hvps: int


def _tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The symmetric tridiagonal matrix with diagonal ``alpha`` and off-diagonal ``beta`` (one shorter)."""
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


def lanczos(matvec, v0: torch.Tensor, steps: int, converged=None):
    """Lanczos with full reorthogonalization from ``v0``.

    Runs up to ``steps`` iterations, stopping early on an invariant subspace or when
    ``converged(ritz_values, residuals)`` says so (checked after every step). Returns
    ``(ritz_values, ritz_vectors_in_basis S, residual_norms, Q)`` with ``Q: [m, n]`` the Lanczos basis;
    the Ritz values are ascending.
    """
    n = v0.numel()
    Q = torch.zeros(min(steps, n), n, dtype=v0.dtype, device=v0.device)
    alpha, beta = [], []
    q = v0 / v0.norm()
    for j in range(min(steps, n)):
        Q[j] = q
        w = matvec(q)
        alpha.append(w @ q)
        basis = Q[: j + 1]
        for _ in range(2):  # twice is enough to keep the basis orthogonal in floating point
            w = w - basis.T @ (basis @ w)
        b = w.norm()
        T = _tridiagonal(torch.stack(alpha).cpu(), torch.stack(beta).cpu() if beta else torch.zeros(0, dtype=v0.dtype))
        vals, S = torch.linalg.eigh(T)
        residuals = (b.cpu() * S[-1]).abs()
        invariant = b <= 1e-10 * float(vals.abs().max())
        if invariant or j + 1 == min(steps, n) or (converged is not None and converged(vals, residuals)):
            if invariant:
                residuals = torch.zeros_like(residuals)
            return vals, S, residuals, Q[: j + 1]
        beta.append(b)
        q = w / b
    raise AssertionError("unreachable")


def top_eigenvalues(f: Objective, theta: torch.Tensor, k: int = 1, method: str = "lanczos", tol: float = 1e-3,
                    max_hvps: int = 2000, generator: torch.Generator | None = None,
                    return_info: bool = False):
    """The ``k`` largest eigenvalues of the Hessian at ``theta``, in descending order.

    ``method="lanczos"``: Lanczos with full reorthogonalization, grown until each of the top ``k``
    Ritz values has residual ``≤ tol·|λ|``. ``method="power"``: power iteration on the Hessian
    deflated by the eigenpairs already found, each run until ``λ`` changes by at most ``tol``
    relatively between iterations, which is cheaper but less exact than Lanczos's residual test (it finds the eigenvalues of largest magnitude, which for a minimizer's Hessian are the
    largest ones). With ``return_info=True`` an :class:`Eigen` with vectors, residuals and the HVP
    count is returned instead.
    """
    n = theta.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in 1..{n}, got {k}")
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    loss_at(f, theta)
    dtype = torch.float64
    count = 0

    def matvec(v):
        nonlocal count
        count += 1
        return hvp(f, theta, v.to(theta.dtype)).to(dtype)

    if method == "lanczos":
        def converged(vals, residuals):
            top = vals.argsort(descending=True)[:k]
            return len(vals) >= k and bool((residuals[top] <= tol * vals[top].abs()).all())

        v0 = torch.randn(n, generator=generator, dtype=dtype).to(theta.device)
        vals, S, _, Q = lanczos(matvec, v0, min(n, max_hvps), converged)
        order = vals.argsort(descending=True)[:k]
        vals, vectors = vals[order], S[:, order].T.to(Q.device) @ Q
    else:
        vals, vecs = [], []
        for _ in range(k):
            v = torch.randn(n, generator=generator, dtype=dtype).to(theta.device)
            lam = math.inf
            while True:
                for u in vecs:
                    v = v - (u @ v) * u
                v = v / v.norm()
                w = matvec(v)
                for lam_j, u in zip(vals, vecs):
                    w = w - lam_j * (u @ v) * u
                # Stop when λ stops moving: a residual test cannot be met here, because the earlier,
                # inexact eigenvectors leave a residual floor in the deflated operator.
                new = float(v @ w)
                converged = abs(new - lam) <= tol * abs(new)
                lam, v = new, w
                if converged:
                    break
                if count >= max_hvps:
                    warnings.warn(f"power iteration used its {max_hvps} HVPs before eigenvalue {len(vals) + 1} "
                                  "converged; raise max_hvps or use method='lanczos'")
                    break
            v = v / v.norm()
            vals.append(lam)
            vecs.append(v)
        vals = torch.tensor(vals, dtype=dtype)
        vectors = torch.stack(vecs)
        order = vals.argsort(descending=True)
        vals, vectors = vals[order], vectors[order]
    if not return_info:
        return vals
    H_v = hvp(f, theta, vectors.to(theta.dtype)).to(dtype)  # true residuals, not the Ritz estimates
    residuals = (H_v - vals[:, None] * vectors).norm(dim=1)
    return Eigen(vals, vectors, residuals, count)


def _rademacher(samples: int, n: int, generator, dtype, device) -> torch.Tensor:
    return (torch.randint(0, 2, (samples, n), generator=generator) * 2 - 1).to(dtype=dtype, device=device)


def hessian_trace(f: Objective, theta: torch.Tensor, samples: int = 100, generator: torch.Generator | None = None,
                  batch: int = 32) -> tuple[float, float]:
    """Hutchinson's estimate of ``tr H = E[vᵀHv]`` (Rademacher ``v``): ``(estimate, standard error)``."""
    if samples < 2:
        raise ValueError("need at least 2 samples for a standard error")
    loss_at(f, theta)
    V = _rademacher(samples, theta.numel(), generator, theta.dtype, theta.device)
    quad = torch.cat([(hvp(f, theta, chunk) * chunk).sum(1) for chunk in V.split(batch)]).to(torch.float64)
    return float(quad.mean()), float(quad.std() / math.sqrt(samples))


@dataclasses.dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe, Ritz ``nodes`` and ``weights``; ``density(grid, σ)`` smooths them."""

    nodes: torch.Tensor
    weights: torch.Tensor
    n: int

    def density(self, grid: torch.Tensor, sigma: float) -> torch.Tensor:
        """Gaussian-smoothed eigenvalue density on ``grid`` (integrates to about 1)."""
        grid = torch.as_tensor(grid, dtype=torch.float64)
        kernel = torch.exp(-0.5 * ((grid[None, None] - self.nodes[..., None]) / sigma) ** 2)
        kernel = kernel / (sigma * math.sqrt(2 * math.pi))
        return (self.weights[..., None] * kernel).sum(1).mean(0)

    def moment(self, fn) -> float:
        """``(1/n)·tr g(H)`` for a function ``g`` of the eigenvalues, e.g. ``lambda x: x`` gives ``tr H / n``."""
        return float((self.weights * fn(self.nodes)).sum(1).mean())


def spectral_density(f: Objective, theta: torch.Tensor, probes: int = 8, steps: int = 80,
                     generator: torch.Generator | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ubaru et al. 2017; Ghorbani et al. 2019) of the Hessian's spectrum.

    For each Gaussian probe, ``steps`` Lanczos iterations give Ritz values (nodes) and the squared
    first components of their eigenvectors (weights): a quadrature rule for the spectral measure.
    """
    n = theta.numel()
    steps = min(steps, n)
    loss_at(f, theta)
    matvec = lambda v: hvp(f, theta, v.to(theta.dtype)).to(torch.float64)
    nodes, weights = [], []
    for _ in range(probes):
        v0 = torch.randn(n, generator=generator, dtype=torch.float64).to(theta.device)
        vals, S, _, _ = lanczos(matvec, v0, steps)
        pad = steps - len(vals)  # an early invariant subspace gives fewer nodes: pad with zero weight
        nodes.append(torch.cat([vals, torch.zeros(pad, dtype=vals.dtype)]))
        weights.append(torch.cat([S[0] ** 2, torch.zeros(pad, dtype=vals.dtype)]))
    return SpectralDensity(torch.stack(nodes), torch.stack(weights), n)


def log_volume_proxy(eigenvalues: torch.Tensor, k: int | None = None) -> float:
    """Wu et al. eq. 13: ``V(k) = Σ_{i ≤ k} log λ_i`` over the top ``k`` eigenvalues (all must be positive).

    A larger ``V(k)`` means a sharper basin: ``−V(k)/2`` is, up to constants, the log-volume of the
    quadratic basin in the span of the top ``k`` eigenvectors.
    """
    top = torch.as_tensor(eigenvalues, dtype=torch.float64).sort(descending=True).values[:k]
    if (top <= 0).any():
        raise ValueError(f"V(k) needs positive eigenvalues, got {top.min().item():.3g} among the top {len(top)}: "
                         "use a smaller k")
    return float(top.log().sum())


def frobenius_estimate(f: Objective, theta: torch.Tensor, samples: int = 100, eps: float = 1e-3,
                       generator: torch.Generator | None = None) -> tuple[float, float]:
    """Wu et al. eq. 14: ``‖H‖_F² = E_v‖Hv‖²`` (``v ~ N(0, I)``) with ``Hv`` by central differences of gradients.

    Returns ``(estimate, standard error)`` of ``‖H‖_F²``. ``(∇f(θ+εv) − ∇f(θ−εv))/(2ε) ≈ Hv``, so the
    sum is divided by ``4Mε²``; eq. 14 as printed divides by ``2Mε²``, which would double the value.
    """
    loss_at(f, theta)
    g = grad(_scalar(f))
    V = torch.randn(samples, theta.numel(), generator=generator, dtype=theta.dtype).to(theta.device)
    diffs = torch.stack([(g(theta + eps * v) - g(theta - eps * v)) for v in V]).to(torch.float64)
    squares = diffs.pow(2).sum(1) / (4 * eps ** 2)
    return float(squares.mean()), float(squares.std() / math.sqrt(samples))
