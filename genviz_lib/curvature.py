"""Curvature: Hessian-vector products and what they buy (Wu et al. 2017, §5.2; Ghorbani et al. 2019).

All functions take an objective ``f(Θ) → [b]`` (see :mod:`genviz_lib.landscape`) and a point
``θ: [n]``; the Hessian is formed only by :func:`hessian`, meant for small nets and tests.

- :class:`HessianOperator`: ``H(θ)`` as a linear operator. What does not depend on ``v`` is computed once
  per point: for an MLP the activations and gradients, each product then a written-out pass of tangents
  (:mod:`~genviz_lib.sequential_curvature`); for any other objective the gradient with its graph kept, each
  product one backward pass through it (reverse-over-reverse). A block of vectors is one batched pass. Every
  measure below takes its products from one operator.
- :func:`hvp`: a product (or a block of them) at a point, through a fresh operator.
- :func:`hessian`: the dense Hessian, column blocks at a time within a memory budget.
- :func:`top_eigenvalues`: the largest eigenvalues by Lanczos with full reorthogonalization, or by
  deflated power iteration; residuals and the number of HVPs on request.
- :func:`hessian_trace`: ``tr H`` by Krylov deflation (the default), XTrace, Hutch++ or Hutchinson, with a
  standard error.
- :func:`hessian_frobenius`: ``‖H‖_F²`` from exact products (Krylov deflation, Hutch++ or Hutchinson), with a
  standard error.
- :func:`spectral_density`: stochastic Lanczos quadrature, all probes advanced together.
- :func:`log_volume_proxy`: Wu et al.'s ``V(k) = Σ_{i≤k} log λ_i`` (eq. 13).
- :func:`frobenius_estimate`: Wu et al.'s finite-difference estimate of ``‖H‖_F²`` (eq. 14), the paper's method.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
import warnings

import torch
from torch.func import functional_call, grad

from .landscape import ModelObjective, Objective, _split, loss_at
from .landscape import parameters as landscape_parameters
from .sequential_curvature import SequentialCurvature


try:  # one C++ call each to split a flat vector into views shaped like tensors and to join tensors into one
    from torch._utils import _flatten_dense_tensors as _flatten
    from torch._utils import _unflatten_dense_tensors as _unflatten
except ImportError:  # pragma: no cover - the same, in Python
    _flatten = lambda tensors: torch.cat([t.reshape(-1) for t in tensors])
    _unflatten = lambda flat, like: [p.view_as(t) for p, t in zip(flat.split([t.numel() for t in like]), like)]


def _model_loss(f: ModelObjective, params: dict) -> torch.Tensor:
    """The mean loss of a model objective at the parameters ``params`` (name → tensor), without ``vmap``."""
    was_training = f.model.training
    f.model.train(f.train_mode)
    try:
        chunks = list(f.data_chunks())
        if len(chunks) == 1:
            return f.loss(functional_call(f.model, (params, f.buffers), (f.X,)), f.y).mean()
        return sum(f.loss(functional_call(f.model, (params, f.buffers), (X,)), y).sum() for X, y in chunks) / len(f.X)
    finally:
        f.model.train(was_training)


def _scalar(f: Objective):
    """``θ ↦ f(θ)`` for one flat vector, differentiable (a model objective evaluates it without ``vmap``)."""
    if isinstance(f, ModelObjective):
        return lambda t: _model_loss(f, _split(f.model, t))
    return lambda t: f(t[None])[0]


class HessianOperator:
    """``H(θ)``, the Hessian of ``f`` at ``θ``, as a linear operator: ``H @ v`` for ``v: [n]`` or ``V: [k, n]``.

    Two engines compute the same products (to rounding); ``engine`` says which one is in use.

    - ``"explicit"`` (:mod:`~genviz_lib.sequential_curvature`): for a model objective whose model is a chain of
      linear layers and ReLU/tanh activations with the cross-entropy or squared-error loss (every MLP of the
      book). The activations and gradients at ``θ`` are computed once; each product is then a forward pass of
      tangents and a backward pass of their gradients, written out as a few matrix products per layer, and a
      block of vectors is the same products with a batch dimension. On the book's MLPs this is 1.3–1.8× faster
      than autograd's double backward for one product and about 2× for a block (``make bench``).
    - ``"autograd"``, for everything else: the gradient is computed once with its graph kept
      (``create_graph=True``), and a product ``Hv`` is the gradient of ``∇f(θ)·v``, one backward pass through
      the kept graph (reverse-over-reverse) with no new forward pass. For a model objective the graph is built
      on one leaf tensor per parameter, as the model's own parameters would be. A block ``V: [k, n]`` goes
      ``block`` vectors per batched backward pass (``is_grads_batched``, i.e. ``vmap`` over the backward pass)
      when that pays: with ``block="auto"`` (the default) the first block of a call is timed both ways,
      batched and one pass per vector, and the faster is kept for the operator's life (small nets gain about
      2×; a conv net or a large data set gains nothing, its products are arithmetic-bound); an integer
      ``block`` fixes the size, 1 meaning one pass per vector. The graph holds the forward pass's activations
      until the operator is dropped. When the gradient does not depend on ``θ`` at all, the products are zeros.

    ``engine="auto"`` (the default) takes the explicit engine where it applies. ``products`` counts the
    products taken; ``saved_bytes`` is the size of the tensors kept for them. (Forward-over-reverse, ``jvp`` of
    ``grad``, needs nothing kept but redoes the forward and backward passes for every product: several times
    slower for every net in ``make bench``, so it is not used.)
    """

    def __init__(self, f: Objective, theta: torch.Tensor, block: int | str = "auto", engine: str = "auto"):
        if block != "auto" and not (isinstance(block, int) and block >= 1):
            raise ValueError(f"block must be 'auto' or an integer ≥ 1, got {block!r}")
        if engine not in ("auto", "explicit", "autograd"):
            raise ValueError(f"engine must be 'auto', 'explicit' or 'autograd', got {engine!r}")
        loss_at(f, theta)
        self.n, self.dtype, self.device = theta.numel(), theta.dtype, theta.device
        self.block, self.batched = (32, None) if block == "auto" else (block, block > 1)
        self.products = 0
        point = theta.detach().clone()
        self._explicit = None if engine == "autograd" else SequentialCurvature.build(f, point)
        if engine == "explicit" and self._explicit is None:
            raise ValueError("the explicit engine needs a model objective of linear layers and ReLU/tanh "
                             "activations (nn.Sequential or models.MLP) with loss 'ce' or 'mse'")
        self.engine = "autograd" if self._explicit is None else "explicit"
        if self._explicit is not None:
            self.saved_bytes = self._explicit.saved_bytes
            return
        if isinstance(f, ModelObjective):
            params = landscape_parameters(f.model)
            # one leaf per parameter, in its own shape, as the model's parameters are
            self._sizes = [p.numel() for _, p in params]
            self._leaves = [t.view(p.shape).clone().requires_grad_(True)
                            for t, (_, p) in zip(point.split(self._sizes), params)]
            loss = lambda: _model_loss(f, {name: leaf for (name, _), leaf in zip(params, self._leaves)})
        else:
            self._sizes, self._leaves = [self.n], [point.requires_grad_(True)]
            loss = lambda: _scalar(f)(self._leaves[0])
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self._grads = torch.autograd.grad(loss(), self._leaves, create_graph=True, allow_unused=True)
        self._constant = [g is None or not g.requires_grad for g in self._grads]
        self._live = [g for g, c in zip(self._grads, self._constant) if not c]
        self._all_live = not any(self._constant)
        self.saved_bytes = sum(saved)

    @property
    def gradient(self) -> torch.Tensor:
        """``∇f(θ)``."""
        if self._explicit is not None:
            return self._explicit.gradient.clone()
        return torch.cat([torch.zeros(s, dtype=self.dtype, device=self.device) if g is None else g.detach().reshape(-1)
                          for g, s in zip(self._grads, self._sizes)])

    def _backward(self, V: torch.Tensor, batched: bool) -> torch.Tensor:
        """Products for ``V: [k, n]`` in one batched backward pass, or ``V: [n]`` in a plain one."""
        if self._explicit is not None:
            return self._explicit.matmat(V) if batched else self._explicit.matvec(V)
        if not batched and self._all_live:
            # one vector: split into the leaves' shapes and joined again by one call each (as DDP does)
            return _flatten(torch.autograd.grad(self._live, self._leaves, _unflatten(V, self._leaves),
                                                retain_graph=True))
        lead = V.shape[:-1]
        pieces = [p.view(*lead, *leaf.shape) for p, leaf in zip(V.split(self._sizes, dim=-1), self._leaves)]
        if self._all_live:
            out = torch.autograd.grad(self._live, self._leaves, pieces, retain_graph=True, is_grads_batched=batched)
        else:
            live = iter(torch.autograd.grad(self._live, self._leaves, [p for p, c in zip(pieces, self._constant)
                                                                        if not c], retain_graph=True,
                                            allow_unused=True, is_grads_batched=batched) if self._live else ())
            out = [torch.zeros_like(p) if c else next(live) for p, c in zip(pieces, self._constant)]
            out = [torch.zeros_like(p) if o is None else o for o, p in zip(out, pieces)]
        return torch.cat([o.reshape(*lead, -1) for o in out], dim=-1) if len(out) > 1 else out[0].reshape(*lead, -1)

    def _loop(self, V: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._backward(v, False) for v in V])

    def matmat(self, V: torch.Tensor, block: int | None = None) -> torch.Tensor:
        """``(H vᵢ)ᵢ`` for the rows of ``V: [k, n]``; ``block`` overrides the operator's block size for this call."""
        if V.ndim != 2 or V.shape[1] != self.n:
            raise ValueError(f"V must be [k, {self.n}], got {tuple(V.shape)}")
        V = V.to(dtype=self.dtype, device=self.device)
        self.products += len(V)
        size = block or self.block
        if len(V) == 1 or size == 1 or (block is None and self.batched is False):
            return self._loop(V)
        chunks = list(V.split(size))
        done = []
        if block is None and self.batched is None and len(chunks) >= 3:
            # decide on the first blocks: one batched pass to warm up, then one block each way, timed
            done.append(self._backward(chunks[0], True))
            start = time.perf_counter()
            done.append(self._loop(chunks[1]))
            middle = time.perf_counter()
            done.append(self._backward(chunks[2], True))
            self.batched = time.perf_counter() - middle < middle - start
            chunks = chunks[3:]
            if not self.batched:
                return torch.cat(done + [self._loop(c) for c in chunks])
        return torch.cat(done + [self._backward(c, True) if len(c) > 1 else self._loop(c) for c in chunks])

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        if v.ndim == 1 and v.shape[0] == self.n and v.dtype == self.dtype:
            self.products += 1
            return self._backward(v, False)
        return self.matmat(v[None])[0] if v.ndim == 1 else self.matmat(v)


def hvp(f: Objective, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``H(θ) v`` for one vector ``v: [n]`` or a batch ``V: [k, n]`` (same shape back).

    Through a fresh :class:`HessianOperator`: for many products at one point, build the
    operator once and use it, as the functions below do."""
    return HessianOperator(f, theta) @ v


def hessian(f: Objective, theta: torch.Tensor, memory: float | None = None) -> torch.Tensor:
    """The dense Hessian ``[n, n]``, for small models and for checking the rest.

    Rows are products with unit vectors, taken ``c`` at a time by one batched backward pass each
    (:class:`HessianOperator`) and written into the result. ``c`` is chosen so that one block's working memory
    (its unit vectors, its products and about twice the graph's saved tensors per vector) stays within ``memory``
    bytes, by default 40% of the Hessian's own size: peak memory is then about 1.4 times the Hessian. (A dense
    Hessian from exact products is symmetric to rounding, not exactly.)"""
    op = HessianOperator(f, theta)
    n, item = op.n, theta.element_size()
    budget = 0.4 * n * n * item if memory is None else float(memory)
    per_vector = 2 * n * item + 2 * op.saved_bytes
    chunk = int(max(1, min(n, budget // per_vector)))
    H = torch.empty(n, n, dtype=theta.dtype, device=theta.device)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        E = torch.zeros(stop - start, n, dtype=theta.dtype, device=theta.device)
        E[torch.arange(stop - start), torch.arange(start, stop)] = 1
        H[start:stop] = op.matmat(E, block=chunk)
        del E
    return H


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


def _lanczos_runs(matmat, V0: torch.Tensor, steps: int, converged=None):
    """``p`` Lanczos runs with full reorthogonalization, one from each row of ``V0: [p, n]``, advanced together:
    each step is one block product ``matmat([p', n])`` of the runs still going. A run stops early on an invariant
    subspace; with ``converged(ritz_values, residuals)`` (for ``p = 1``) the run stops when it says so.
    Returns, per run, ``(ritz_values ascending, their vectors in the basis S, residual norms, basis Q: [m, n])``."""
    p, n = V0.shape
    m = min(steps, n)
    Q = V0.new_zeros(p, m, n)
    alpha, beta = V0.new_zeros(p, m), V0.new_zeros(p, m)
    length = [m] * p
    active = torch.ones(p, dtype=torch.bool)
    q = V0 / V0.norm(dim=1, keepdim=True)
    for j in range(m):
        Q[:, j] = q
        rows = active.nonzero()[:, 0]
        W = torch.zeros_like(q)
        W[rows] = matmat(q[rows])
        alpha[:, j] = (W * q).sum(1)
        basis = Q[:, : j + 1]
        for _ in range(2):  # twice is enough to keep the basis orthogonal in floating point
            W = W - torch.einsum("pjn,pj->pn", basis, torch.einsum("pjn,pn->pj", basis, W))
        b = W.norm(dim=1)
        beta[:, j] = b
        scale = torch.maximum(alpha[:, : j + 1].abs().amax(1), beta[:, :j].amax(1) if j else alpha[:, 0].abs())
        for r in rows.tolist():
            if b[r] <= 1e-10 * scale[r]:  # invariant subspace: the Ritz values are exact
                length[r], active[r], beta[r, j] = j + 1, False, 0.0
        if converged is not None and active[0]:
            T = _tridiagonal(alpha[0, : j + 1].cpu(), beta[0, :j].cpu())
            vals, S = torch.linalg.eigh(T)
            if converged(vals, (b[0].cpu() * S[-1]).abs()):
                length[0], active[0] = j + 1, False
        if not active.any():
            break
        q = W / torch.where(b > 0, b, torch.ones_like(b))[:, None]
    out = []
    for r in range(p):
        L = length[r]
        vals, S = torch.linalg.eigh(_tridiagonal(alpha[r, :L].cpu(), beta[r, : L - 1].cpu()))
        out.append((vals, S, (beta[r, L - 1].cpu() * S[-1]).abs(), Q[r, :L]))
    return out


def lanczos(matvec, v0: torch.Tensor, steps: int, converged=None):
    """Lanczos with full reorthogonalization from ``v0``.

    Runs up to ``steps`` iterations, stopping early on an invariant subspace or when
    ``converged(ritz_values, residuals)`` says so (checked after every step). Returns
    ``(ritz_values, ritz_vectors_in_basis S, residual_norms, Q)`` with ``Q: [m, n]`` the Lanczos basis;
    the Ritz values are ascending.
    """
    return _lanczos_runs(lambda V: torch.stack([matvec(v) for v in V]), v0[None], steps, converged)[0]


def _float64_products(op: HessianOperator):
    """``V ↦ H V`` in float64 for the Krylov methods (the products themselves in the objective's dtype)."""
    return lambda V: op.matmat(V.to(op.dtype)).to(torch.float64)


def top_eigenvalues(f: Objective, theta: torch.Tensor, k: int = 1, method: str = "lanczos", tol: float = 1e-3,
                    max_hvps: int = 2000, generator: torch.Generator | None = None,
                    return_info: bool = False):
    """The ``k`` largest eigenvalues of the Hessian at ``theta``, in descending order.

    ``method="lanczos"``: Lanczos with full reorthogonalization, grown until each of the top ``k``
    Ritz values has residual ``≤ tol·|λ|``. ``method="power"``: power iteration on the Hessian
    deflated by the eigenpairs already found, each run until ``λ`` changes by at most ``tol``
    relatively between iterations, which is cheaper but less exact than Lanczos's residual test (it finds the
    eigenvalues of largest magnitude, which for a minimizer's Hessian are the largest ones). Products come one
    at a time from one :class:`HessianOperator` (built once). With
    ``return_info=True`` an :class:`Eigen` with vectors, residuals and the HVP count is returned instead.
    """
    n = theta.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in 1..{n}, got {k}")
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    op = HessianOperator(f, theta)
    products = _float64_products(op)
    dtype = torch.float64

    if method == "lanczos":
        def converged(vals, residuals):
            top = vals.argsort(descending=True)[:k]
            return len(vals) >= k and bool((residuals[top] <= tol * vals[top].abs()).all())

        v0 = torch.randn(n, generator=generator, dtype=dtype).to(theta.device)
        vals, S, _, Q = _lanczos_runs(products, v0[None], min(n, max_hvps), converged)[0]
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
                w = products(v[None])[0]
                for lam_j, u in zip(vals, vecs):
                    w = w - lam_j * (u @ v) * u
                # Stop when λ stops moving: a residual test cannot be met here, because the earlier,
                # inexact eigenvectors leave a residual floor in the deflated operator.
                new = float(v @ w)
                converged = abs(new - lam) <= tol * abs(new)
                lam, v = new, w
                if converged:
                    break
                if op.products >= max_hvps:
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
    count = op.products
    H_v = products(vectors)  # true residuals, not the Ritz estimates
    residuals = (H_v - vals[:, None] * vectors).norm(dim=1)
    return Eigen(vals, vectors, residuals, count)


class Estimate(typing.NamedTuple):
    """A stochastic estimate and its standard error (unpacks as ``value, se``)."""

    value: float
    se: float


TRACE_METHODS = ("krylov", "xtrace", "hutch++", "hutchinson")


def _rademacher(samples: int, n: int, generator, dtype, device) -> torch.Tensor:
    return (torch.randint(0, 2, (samples, n), generator=generator) * 2 - 1).to(dtype=dtype, device=device)


def _orthonormal_rows(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Q, R)`` with ``Y = (Q R)ᵀ``-style rows: ``Q: [k, n]`` orthonormal rows spanning the rows of ``Y: [k, n]``
    and ``R: [k, k]`` upper triangular with ``Yᵀ = Qᵀ R``."""
    Q, R = torch.linalg.qr(Y.T)
    return Q.T, R


def _exact_by_columns(op: HessianOperator, what: str) -> Estimate:
    """When the budget reaches ``n``: the exact value from the ``n`` columns (no sampling error)."""
    H = op.matmat(torch.eye(op.n, dtype=op.dtype, device=op.device)).to(torch.float64)
    return Estimate(float(H.diagonal().sum() if what == "trace" else H.pow(2).sum()), 0.0)


def _krylov_deflation(op: HessianOperator, steps: int, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``steps`` Lanczos steps from a Gaussian start: ``(Q: [m, n] orthonormal, Ritz values, residual norms)``.
    ``QᵀHQ`` is the tridiagonal matrix, so ``tr(QᵀHQ) = Σ Ritz values`` and ``‖HQ‖_F² = Σ Ritz² + Σ residual²``
    (``HQ = QT + β q_{m+1} e_mᵀ``, and the residual norms are ``|β|`` times the last row of the orthogonal ``S``)
    without further products."""
    v0 = torch.randn(op.n, generator=generator, dtype=torch.float64).to(op.device)
    vals, _, residuals, Q = _lanczos_runs(_float64_products(op), v0[None], steps)[0]
    return Q, vals, residuals


def _projected(op: HessianOperator, samples: int, method: str, generator, what: str) -> Estimate:
    """``tr H`` or ``‖H‖_F²`` as an exact part on the span of an orthonormal ``Q`` plus Hutchinson on the rest:
    ``tr H = tr(QᵀHQ) + tr((I − QQᵀ)H(I − QQᵀ))``, ``‖H‖_F² = ‖HQ‖_F² + ‖H(I − QQᵀ)‖_F²`` for any ``Q``, so the
    estimate is unbiased and its standard error is the rest's. ``Q`` is a Lanczos basis from half the budget
    (``"krylov"``), an orthonormal basis of ``HS`` for a third of it with ``HQ`` for another third (``"hutch++"``),
    or empty (``"hutchinson"``)."""
    H = _float64_products(op)
    draw = lambda k: _rademacher(k, op.n, generator, torch.float64, op.device)
    if method == "krylov":
        Q, vals, residuals = _krylov_deflation(op, samples // 2, generator)
        exact = float(vals.sum()) if what == "trace" else float(vals.pow(2).sum() + residuals.pow(2).sum())
    elif method == "hutch++":
        Q, _ = _orthonormal_rows(H(draw(samples // 3)))
        HQ = H(Q)
        exact = float((HQ * Q).sum()) if what == "trace" else float(HQ.pow(2).sum())
    else:
        Q, exact = torch.zeros(0, op.n, dtype=torch.float64, device=op.device), 0.0
    used = len(Q) * (2 if method == "hutch++" else 1)
    G = draw(samples - used)
    G = G - (G @ Q.T) @ Q
    HG = H(G)
    terms = (HG * G).sum(1) if what == "trace" else HG.pow(2).sum(1)
    return Estimate(exact + float(terms.mean()), float(terms.std() / math.sqrt(len(G))))


def _operator_or_exact(f, theta, samples, method, methods, what):
    """Checks, then ``(operator, None)``, or ``(None, exact value)`` when the budget reaches ``n``."""
    if method not in methods:
        raise ValueError(f"method must be one of {', '.join(methods)}, got {method!r}")
    least = 2 if method == "hutchinson" else 4
    if samples < least:
        raise ValueError(f"{method} needs at least {least} products for a standard error, got {samples}")
    op = HessianOperator(f, theta)
    return (None, _exact_by_columns(op, what)) if samples >= op.n else (op, None)


def hessian_trace(f: Objective, theta: torch.Tensor, samples: int = 100, method: str = "krylov",
                  generator: torch.Generator | None = None) -> Estimate:
    """``tr H`` from ``samples`` Hessian-vector products: ``(estimate, standard error)``. All four are unbiased.

    - ``"krylov"`` (default): half the budget runs Lanczos from a random start, whose basis ``Q`` spans the top of
      the spectrum far better than a one-step sketch, and ``tr(QᵀHQ)`` is the sum of the Ritz values, with no
      further products; the other half estimates ``tr((I − QQᵀ)H(I − QQᵀ))`` by Hutchinson (Rademacher vectors),
      whose standard error is the estimate's, since the two parts add up to ``tr H`` for any ``Q``. Deflating
      with a Krylov space is the idea of Chen & Hallman's Krylov-aware estimators (2023); on the book's nets it
      is several times tighter than XTrace at the same budget (``make bench``).
    - ``"xtrace"`` (Epperly, Tropp & Webber 2024): ``samples/2`` test vectors ``W``; the exact trace of ``H`` on
      the span of ``HW`` with one vector left out, plus a Hutchinson term for the left-out vector on the rest,
      averaged over which vector is left out; the standard error is that of the ``samples/2`` exchangeable
      estimates.
    - ``"hutch++"`` (Meyer et al. 2021): a third of the budget sketches the top of the spectrum (``Q`` spanning
      ``HS``), a third takes ``tr(QᵀHQ)`` exactly, a third estimates the rest by Hutchinson on ``(I − QQᵀ)``.
    - ``"hutchinson"`` (Hutchinson 1989): the mean of ``vᵀHv`` over Rademacher ``v``.

    All products come from one :class:`HessianOperator`. A budget of at least ``n`` gives the exact trace.
    """
    op, exact = _operator_or_exact(f, theta, samples, method, TRACE_METHODS, "trace")
    if exact is not None:
        return exact
    if method != "xtrace":
        return _projected(op, samples, method, generator, "trace")
    H = _float64_products(op)
    draw = lambda k: _rademacher(k, op.n, generator, torch.float64, theta.device)
    k = samples // 2
    W = draw(k)
    Y = H(W)  # rows: H wᵢ
    Q, R = _orthonormal_rows(Y)
    Z = H(Q)  # rows: H qⱼ
    C = Q @ Z.T  # QᵀHQ, [k, k]
    # sᵢ: the unit vector (in Q's coordinates) orthogonal to every Hw_j but the i-th; leaving wᵢ out of the
    # basis projects on Q(I − sᵢsᵢᵀ)Qᵀ.
    S = torch.linalg.inv(R).T
    S = S / S.norm(dim=0, keepdim=True)
    low = C.diagonal().sum() - torch.einsum("ji,jk,ki->i", S, C, S)
    B = Q @ W.T  # coordinates of the wᵢ in Q, one column each
    c = B - S * (S * B).sum(0, keepdim=True)  # (I − sᵢsᵢᵀ) Qᵀwᵢ
    U = W - c.T @ Q  # the part of wᵢ outside the basis without wᵢ
    HU = Y - c.T @ Z
    estimates = low + (U * HU).sum(1)
    return Estimate(float(estimates.mean()), float(estimates.std() / math.sqrt(k)))


FROBENIUS_METHODS = ("krylov", "hutch++", "hutchinson")


def hessian_frobenius(f: Objective, theta: torch.Tensor, samples: int = 100, method: str = "krylov",
                      generator: torch.Generator | None = None) -> Estimate:
    """``‖H‖_F² = tr H² = E‖Hv‖²`` from ``samples`` exact Hessian-vector products: ``(estimate, standard error)``.

    ``"krylov"`` (default): half the budget runs Lanczos, whose basis ``Q`` gives ``‖HQ‖_F²`` (the part of
    ``‖H‖_F²`` on its span) from the tridiagonal matrix alone; the rest estimates ``‖H(I − QQᵀ)‖_F²`` as the mean
    of ``‖H(I − QQᵀ)g‖²`` over Rademacher ``g``. The two parts add up to ``‖H‖_F²`` because ``QQᵀ`` is a
    projection. ``"hutch++"``: the same split with ``Q`` spanning ``HS`` for a third of the budget and ``‖HQ‖_F²``
    taken by another third. ``"hutchinson"``: the mean of ``‖Hv‖²``. All are unbiased. Unlike
    :func:`frobenius_estimate` (eq. 14) no difference quotient is taken, so ReLU switches and rounding do not
    enter. A budget of at least ``n`` gives the exact value.
    """
    op, exact = _operator_or_exact(f, theta, samples, method, FROBENIUS_METHODS, "frobenius")
    return exact if exact is not None else _projected(op, samples, method, generator, "frobenius")


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
    first components of their eigenvectors (weights): a quadrature rule for the spectral measure. The probes'
    Lanczos runs advance together, so each step is one batched product of all probes (:class:`HessianOperator`).
    """
    n = theta.numel()
    steps = min(steps, n)
    op = HessianOperator(f, theta)
    V0 = torch.randn(probes, n, generator=generator, dtype=torch.float64).to(theta.device)
    nodes, weights = [], []
    for vals, S, _, _ in _lanczos_runs(_float64_products(op), V0, steps):
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
    This is the paper's method, kept to reproduce it. For a ReLU net the steps ``±εv`` (of length ``ε√n``)
    switch units on and off and the difference quotient counts the jumps of the gradient as curvature, so at
    ``ε = 10⁻³`` it overestimates; a smaller ``ε`` avoids the switches, until rounding (``≈ 10⁻⁷/ε²`` relative in
    float32, far less in float64) takes over. :func:`hessian_frobenius` estimates the same quantity from exact
    products, without either error.
    """
    loss_at(f, theta)
    g = grad(_scalar(f))
    V = torch.randn(samples, theta.numel(), generator=generator, dtype=theta.dtype).to(theta.device)
    diffs = torch.stack([(g(theta + eps * v) - g(theta - eps * v)) for v in V]).to(torch.float64)
    squares = diffs.pow(2).sum(1) / (4 * eps ** 2)
    return float(squares.mean()), float(squares.std() / math.sqrt(samples))
