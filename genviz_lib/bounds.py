"""A non-vacuous PAC-Bayes bound computed live (Dziugaite & Roy 2017, *Computing nonvacuous generalization
bounds for deep (stochastic) neural networks with many more parameters than training data*, UAI 2017).

The stochastic net is ``Q = N(w, diag s)``: every prediction draws its weights from a Gaussian centred at
``w`` with per-parameter variances ``s``. Its error on the data distribution, ``e_Q``, is bounded through the
prior ``P = N(w0, λ I)`` centred at the net's random initialization ``w0`` (chosen before seeing the data)
and the ``m`` training points, in four steps, each a function here:

1. **The PAC-Bayes theorem** (their §2, after McAllester 1999, Langford & Seeger 2001 and Langford 2002): with
   probability at least ``1 − δ`` over the training set, for every ``Q`` at once,
   ``kl(ê_Q ‖ e_Q) ≤ (KL(Q‖P) + ln(m/δ)) / (m − 1)``, where ``kl`` is the KL divergence of two Bernoulli
   distributions (:func:`binary_kl`) and ``ê_Q`` the stochastic net's expected training error.
2. **The prior variance from a grid**: ``λ`` is learned, so it must be one of countably many priors fixed in
   advance, ``λ_j = c·exp(−j/b)`` for ``j = 1, 2, …`` (they take ``c = 0.1``, ``b = 100``), each with its own
   share ``δ_j = 6δ/(π² j²)`` of the failure probability (``Σ_j 6/(π² j²) = 1``). Replacing ``δ`` by ``δ_j``
   turns ``ln(m/δ)`` into ``2 ln j + ln(π² m / (6δ))`` with ``j = b·ln(c/λ)`` — their
   ``B_RE(w, s, λ; δ) = (KL(Q‖P) + 2 ln(b ln(c/λ)) + ln(π² m / (6δ))) / (m − 1)``
   (:func:`union_log_term`, :func:`bre`). ``j ≥ 1`` is required: ``λ ≤ c·e^{−1/b}``.
3. **The sample-convergence bound** (Langford & Caruana 2001): ``ê_Q`` is an expectation over weight draws,
   estimated by the mean ``ê_Q̂`` of the training errors of ``N`` independent draws; with probability at
   least ``1 − δ'``, ``ê_Q ≤ kl⁻¹(ê_Q̂, ln(2/δ') / N)`` (:func:`sample_convergence_bound`).
4. **Inverting the kl** (:func:`kl_inverse`): ``e_Q ≤ kl⁻¹(ê_Q upper, B_RE)``, which holds with probability
   at least ``1 − δ − δ'`` (:func:`pac_bayes_kl_bound`). They take ``δ = 0.025``, ``δ' = 0.01``.

With ``Q`` and ``P`` Gaussian the KL is closed-form (their §3):
``KL(Q‖P) = ½ [ (‖s‖₁ + ‖w − w0‖²)/λ − d + d ln λ − Σ_i ln s_i ]`` for ``d`` parameters (:func:`gaussian_kl`).

:func:`optimize_bound` finds ``Q``: from a trained deterministic net it minimizes by stochastic gradients
(RMSprop, the reparametrization trick, one weight draw per minibatch) their differentiable objective
``ê_surrogate(Q) + sqrt(B_RE / 2)`` over ``w``, ``s`` and ``λ`` — the 0–1 error replaced by a convex
surrogate, and ``kl⁻¹`` by Pinsker's ``kl(q‖p) ≥ 2(q − p)²`` (the McAllester form ``ê + sqrt(B_RE/2)``);
then it rounds ``λ`` to the grid and evaluates steps 3 and 4 with fresh weight draws. :func:`neyshabur_bound`
computes, for the same trained net, Neyshabur et al.'s (2017) bound of :mod:`genviz_lib.sharpness` so the
two can be printed side by side.

Where this follows the paper and where it departs from it:

- The bound is theirs term for term: ``ln(m/δ)/(m − 1)`` in the theorem (not Maurer's
  ``ln(2√m/δ)/m``, which would be slightly tighter), the grid's ``2 ln(b ln(c/λ)) + ln(π² m/(6δ))``, the
  sample-convergence ``ln(2/δ')/N``, ``δ = 0.025``, ``δ' = 0.01``, ``c = 0.1``, ``b = 100``, and ``λ``
  rounded to the better of its two neighbouring grid points, as the authors' released code does.
- The optimization follows their code's choices (RMSprop, batches of 100, posterior standard deviations
  starting at ``2|w|``, the prior's at ``e^{−3}``, the learning rate dropped late in the run) with a far
  smaller budget: the book profile takes 15,000 steps at a learning rate of 0.003 instead of hundreds of
  epochs at 0.001, and 1,000 Monte Carlo draws instead of 150,000 (which costs about 0.03 in the bound).
- The surrogate is the cross-entropy over ``ln 2`` for any number of classes (the paper's tasks are binary,
  where it is their logistic loss over ``ln 2``).
- Numbers: the optimization runs in float32; the final KL, the log terms and the kl inversions in float64.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import sharpness
from .config import get_device
from .data import Data
from .losses import class_logits, cross_entropy
from .progress import Progress

LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# The binary kl and its inverse
# --------------------------------------------------------------------------------------------


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x·ln y`` with ``0·ln y = 0`` for every ``y`` (so ``0·ln 0 = 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * np.log(y)
    return np.where(x == 0, 0.0, out)


def _as_probability(name: str, value) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if np.isnan(a).any() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return a


def _scalar_or_array(a: np.ndarray, *inputs):
    return float(a) if all(np.ndim(x) == 0 for x in inputs) else a


def binary_kl(q, p):
    """``kl(q‖p) = q ln(q/p) + (1 − q) ln((1 − q)/(1 − p))``: the KL divergence of Bernoulli(q) from Bernoulli(p).

    Elementwise on numbers or arrays (broadcast); ``0·ln 0 = 0``, and ``kl(q‖p) = ∞`` where ``p`` is 0 or 1
    and ``q`` is not.
    """
    qa, pa = _as_probability("q", q), _as_probability("p", p)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (_xlogy(qa, qa) - _xlogy(qa, pa)) + (_xlogy(1 - qa, 1 - qa) - _xlogy(1 - qa, 1 - pa))
    return _scalar_or_array(np.maximum(kl, 0.0), q, p)


def kl_inverse(q, c, iterations: int = 80):
    """``kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}``, the largest true error that an empirical error ``q``
    and a budget ``c`` allow.

    Elementwise on numbers or arrays (broadcast). ``kl(q‖·)`` increases on ``[q, 1]``, so the supremum is
    the root of ``kl(q‖p) = c`` there; it is found by bisection (``iterations`` halvings of ``[q, 1]``, down
    to adjacent floating-point numbers) and the upper end of the final bracket is returned, so the answer
    is never below the exact one (a bound stays a bound). Exact cases: ``c = 0`` gives ``q``; ``q = 1`` and
    ``c = ∞`` give 1; ``q = 0`` gives ``1 − e^{−c}`` (``kl(0‖p) = −ln(1 − p)``).
    """
    qa = _as_probability("q", q)
    ca = np.asarray(c, dtype=np.float64)
    if np.isnan(ca).any() or (ca < 0).any():
        raise ValueError(f"c must be non-negative, got {c!r}")
    qa, ca = np.broadcast_arrays(qa, ca)
    lo, hi = qa.copy(), np.ones_like(qa)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        inside = binary_kl(qa, mid) <= ca
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    out = hi
    out = np.where(qa == 0, -np.expm1(-ca), out)
    out = np.where(ca == 0, qa, out)
    out = np.where((qa == 1) | np.isinf(ca), 1.0, out)
    return _scalar_or_array(np.clip(out, qa, 1.0), q, c)


def sample_convergence_bound(mc_error, n: int, delta_prime: float):
    """Langford & Caruana's (2001) sample-convergence bound: ``kl⁻¹(ê_Q̂, ln(2/δ') / n)``.

    ``mc_error`` is the mean training error of ``n`` independent weight draws from ``Q``; with probability at
    least ``1 − δ'`` over the draws, the stochastic net's expected training error ``ê_Q`` is at most this.
    """
    if n < 1 or not 0 < delta_prime < 1:
        raise ValueError(f"need n ≥ 1 draws and 0 < δ' < 1, got {n} and {delta_prime}")
    return kl_inverse(mc_error, math.log(2 / delta_prime) / n)


# --------------------------------------------------------------------------------------------
# The prior grid, the KL and the bound
# --------------------------------------------------------------------------------------------


def _check_grid(c: float, b: float) -> None:
    if not (c > 0 and b > 0):
        raise ValueError(f"the prior grid needs c > 0 and b > 0, got c={c}, b={b}")


def prior_variance(j: int, c: float = 0.1, b: float = 100.0) -> float:
    """The ``j``-th prior variance of the grid, ``λ_j = c·exp(−j/b)`` (``j ≥ 1``)."""
    _check_grid(c, b)
    if int(j) != j or j < 1:
        raise ValueError(f"the grid index j must be an integer ≥ 1, got {j}")
    return c * math.exp(-j / b)


def grid_index(lam: float, c: float = 0.1, b: float = 100.0) -> float:
    """``j = b·ln(c/λ)``: where a prior variance ``λ`` falls on the grid (not rounded)."""
    _check_grid(c, b)
    if not lam > 0:
        raise ValueError(f"the prior variance must be positive, got {lam}")
    return b * math.log(c / lam)


def round_to_grid(lam: float, c: float = 0.1, b: float = 100.0) -> tuple[int, ...]:
    """The grid indices next to ``λ``: ``floor`` and ``ceil`` of ``b·ln(c/λ)``, each at least 1 (one index
    when they coincide). Dziugaite & Roy evaluate the bound at both and keep the smaller."""
    j = grid_index(lam, c, b)
    return tuple(sorted({max(1, math.floor(j)), max(1, math.ceil(j))}))


def _check_m_delta(m: int, delta: float) -> None:
    if int(m) != m or m < 2:
        raise ValueError(f"need m ≥ 2 training points (the bound divides by m − 1), got {m}")
    if not 0 < delta < 1:
        raise ValueError(f"δ must lie in (0, 1), got {delta}")


def union_log_term(j: float, m: int, delta: float, b: float = 100.0) -> float:
    """``2 ln j + ln(π² m / (6δ))``: ``ln(m/δ_j)`` for the ``j``-th prior of the grid, whose share of the
    failure probability is ``δ_j = 6δ/(π² j²)``. With ``j = b ln(c/λ)`` this is Dziugaite & Roy's
    ``2 ln(b ln(c/λ)) + ln(π² m/(6δ))``; ``j`` may be fractional while optimizing, and must be ≥ 1."""
    _check_m_delta(m, delta)
    if not j >= 1:
        raise ValueError(f"the grid index must be ≥ 1 (λ ≤ c·e^(−1/b)), got {j}")
    return 2 * math.log(j) + math.log(math.pi ** 2 * m / (6 * delta))


def bre(kl, log_term, m: int):
    """``B_RE = (KL + log term) / (m − 1)``: the right-hand side of the PAC-Bayes theorem (works on tensors)."""
    if int(m) != m or m < 2:
        raise ValueError(f"need m ≥ 2 training points, got {m}")
    return (kl + log_term) / (m - 1)


def gaussian_kl(w: torch.Tensor, log_std: torch.Tensor, w0: torch.Tensor, log_prior_std) -> torch.Tensor:
    """``KL(N(w, diag s) ‖ N(w0, λ I))`` with ``s = exp(2·log_std)`` and ``λ = exp(2·log_prior_std)``.

    Computed as ``½ Σ_i (r_i − 1 − ln r_i) + ‖w − w0‖²/(2λ)`` with ``r_i = s_i/λ`` — the same as
    ``½ [(‖s‖₁ + ‖w − w0‖²)/λ − d + d ln λ − Σ ln s_i]``, but as a sum of non-negative terms, which loses
    nothing to cancellation when ``d`` is large. Differentiable in every argument.
    """
    if not (w.shape == log_std.shape == w0.shape):
        raise ValueError(f"w, log_std and w0 must have one shape, got {tuple(w.shape)}, {tuple(log_std.shape)}, "
                         f"{tuple(w0.shape)}")
    rho = torch.as_tensor(log_prior_std, dtype=w.dtype, device=w.device)
    log_r = 2 * (log_std - rho)
    return 0.5 * (torch.exp(log_r) - 1 - log_r).sum() + (w - w0).pow(2).sum() / (2 * torch.exp(2 * rho))


def pac_bayes_kl_bound(train_error_upper: float, kl: float, m: int, delta: float, j: int,
                       b: float = 100.0) -> float:
    """``kl⁻¹(ê_Q upper, (KL + 2 ln j + ln(π² m/(6δ))) / (m − 1))``: Dziugaite & Roy's final bound on ``e_Q``
    for the ``j``-th prior of the grid, given an upper bound on the stochastic training error (e.g. from
    :func:`sample_convergence_bound`)."""
    if kl < 0:
        raise ValueError(f"a KL divergence is non-negative, got {kl}")
    return kl_inverse(train_error_upper, bre(kl, union_log_term(j, m, delta, b), m))


def mcallester_bound(train_error_upper: float, kl: float, m: int, delta: float, j: int, b: float = 100.0) -> float:
    """The looser square-root form the optimization uses, ``ê + sqrt(B_RE/2)`` (Pinsker), capped at 1."""
    if kl < 0:
        raise ValueError(f"a KL divergence is non-negative, got {kl}")
    return min(1.0, train_error_upper + math.sqrt(bre(kl, union_log_term(j, m, delta, b), m) / 2))


# --------------------------------------------------------------------------------------------
# An MLP as a function of a flat parameter vector (batched over weight draws)
# --------------------------------------------------------------------------------------------


class FlatMLP:
    """A ReLU MLP (``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``, e.g. :class:`~genviz_lib.models.MLP`)
    evaluated at flat parameter vectors in :func:`~genviz_lib.landscape.flatten`'s order.

    ``FlatMLP(net)(theta, X)`` gives logits ``[N, out]`` for ``theta: [n]`` and ``[K, N, out]`` for ``K``
    vectors ``[K, n]`` (``K`` weight draws in one batched product per layer).
    """

    def __init__(self, net: nn.Module):
        mods = list(net.children()) if isinstance(net, nn.Sequential) else None
        if not mods or not isinstance(mods[0], nn.Linear) or any(not isinstance(m, (nn.Linear, nn.ReLU)) for m in mods):
            raise TypeError("FlatMLP takes an nn.Sequential of nn.Linear and nn.ReLU layers (e.g. models.MLP)")
        self.layers, offset = [], 0
        for i, m in enumerate(mods):
            if isinstance(m, nn.Linear):
                relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
                nw = m.weight.numel()
                nb = m.bias.numel() if m.bias is not None else 0
                self.layers.append((offset, m.out_features, m.in_features, nb > 0, relu))
                offset += nw + nb
        self.n = offset
        if self.n != sum(p.numel() for p in net.parameters() if p.requires_grad):
            raise TypeError("every parameter of the net must be trainable")

    def __call__(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        if theta.shape[-1] != self.n or theta.ndim not in (1, 2):
            raise ValueError(f"θ must have shape [{self.n}] or [K, {self.n}], got {tuple(theta.shape)}")
        lead = theta.shape[:-1]
        h = X.flatten(1)
        for offset, out, inp, has_bias, relu in self.layers:
            W = theta[..., offset: offset + out * inp].reshape(*lead, out, inp)
            h = h @ W.transpose(-1, -2)
            if has_bias:
                bias = theta[..., offset + out * inp: offset + out * inp + out]
                h = h + (bias[:, None, :] if lead else bias)
            if relu:
                h = torch.relu(h)
        return h


def _errors(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example 0–1 errors (one logit: the sign decides between classes 0 and 1)."""
    return (class_logits(logits).argmax(-1) != y).float()


@torch.no_grad()
def error_rates(f: FlatMLP, theta: torch.Tensor, data: Data, chunk: int = 8192) -> torch.Tensor:
    """The 0–1 error of each parameter vector of ``theta: [K, n]`` on ``data`` (a tensor ``[K]``)."""
    theta = theta[None] if theta.ndim == 1 else theta
    wrong = torch.zeros(theta.shape[0], dtype=torch.float64, device=theta.device)
    for start in range(0, len(data), chunk):
        X = data.X[start: start + chunk].to(theta.device)
        y = data.y[start: start + chunk].to(theta.device)
        wrong += _errors(f(theta, X), y).sum(-1).double()
    return wrong / len(data)


@torch.no_grad()
def stochastic_error_draws(f: FlatMLP, w: torch.Tensor, std: torch.Tensor, data: Data, samples: int,
                           generator: torch.Generator, batch: int = 8, chunk: int = 8192) -> torch.Tensor:
    """The 0–1 errors on ``data`` of ``samples`` independent weight draws ``w + std ⊙ ε`` (a tensor
    ``[samples]``), ``batch`` draws evaluated together. ``generator`` draws the noise, on its own device
    (the CPU's or ``w``'s); the noise is moved to ``w``'s device."""
    out = []
    for start in range(0, samples, batch):
        k = min(batch, samples - start)
        eps = torch.randn(k, w.numel(), generator=generator, dtype=w.dtype, device=generator.device).to(w.device)
        out.append(error_rates(f, w + std * eps, data, chunk))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# The optimization and the bound
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous number after (``None``: no change).

    Small operations (a minibatch of 100 through a narrow MLP) gain nothing from several threads, and when
    other processes share the cores, threads that spin-wait for each other can make them many times slower.
    """
    if n is None:
        yield
        return
    if int(n) != n or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class PacBayesBound:
    """What :func:`optimize_bound` found; ``dataclasses.asdict`` turns it into JSON-ready values.

    ``bound`` holds with probability at least ``confidence = 1 − δ − δ'`` over the training set and the
    Monte Carlo draws. ``stochastic_train_error`` is the Monte Carlo estimate ``ê_Q̂`` from ``mc_samples``
    draws and ``stochastic_train_error_upper`` its sample-convergence bound; ``bound = kl⁻¹(that upper value,
    (kl + log_term) / (m − 1))`` with ``log_term = 2 ln j + ln(π² m/(6δ))`` for the grid index ``prior_index``
    (``prior_variance = c·exp(−prior_index/b)``). ``mcallester_bound`` is the square-root form of the same
    numbers. ``stochastic_test_error`` (``test_mc_samples`` draws) and the deterministic ``train_error``,
    ``test_error`` (the mean ``w`` after the optimization; ``initial_*`` before it) are measured, not bounded.
    ``history`` samples the optimization: step, surrogate, KL, ``sqrt(B_RE/2)``, λ and the objective.
    """

    bound: float
    stochastic_train_error: float
    stochastic_train_error_upper: float
    stochastic_test_error: float
    train_error: float
    test_error: float
    initial_train_error: float
    initial_test_error: float
    kl: float
    log_term: float
    bre: float
    mcallester_bound: float
    m: int
    delta: float
    delta_prime: float
    confidence: float
    mc_samples: int
    test_mc_samples: int
    prior_variance: float
    prior_index: int
    prior_variance_optimized: float
    c: float
    b: float
    mean_posterior_std: float
    median_posterior_std: float
    distance_to_init: float
    n_params: int
    steps: int
    seconds: float
    seconds_optimize: float
    seconds_monte_carlo: float
    history: dict


def _check_options(m, delta, delta_prime, mc_samples, test_mc_samples, steps, batch_size, lr, c, b):
    _check_m_delta(m, delta)
    if not 0 < delta_prime < 1 or delta + delta_prime >= 1:
        raise ValueError(f"need 0 < δ' < 1 and δ + δ' < 1, got δ={delta}, δ'={delta_prime}")
    if mc_samples < 1 or test_mc_samples < 0:
        raise ValueError(f"need mc_samples ≥ 1 and test_mc_samples ≥ 0, got {mc_samples}, {test_mc_samples}")
    if steps < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need steps ≥ 0, batch_size ≥ 1 and lr > 0, got {steps}, {batch_size}, {lr}")
    _check_grid(c, b)


def optimize_bound(net: nn.Module, init: torch.Tensor | nn.Module, train: Data, test: Data | None = None, *,
                   steps: int = 10000, lr: float = 1e-3, batch_size: int = 100, optimizer: str = "rmsprop",
                   lr_drop_at: float = 0.75, lr_factor: float = 0.1, delta: float = 0.025,
                   delta_prime: float = 0.01, c: float = 0.1, b: float = 100.0, mc_samples: int = 1000,
                   test_mc_samples: int = 100, init_std_scale: float = 2.0, init_log_prior_std: float = -3.0,
                   mc_batch: int = 8, history_points: int = 50, loop_threads: int | None = 1, seed: int = 0,
                   device=None,
                   progress: bool = True, desc: str = "PAC-Bayes bound") -> PacBayesBound:
    """Dziugaite & Roy's procedure from a trained net ``net`` and its random initialization ``init``.

    1. *Optimize* ``min_{w, s, λ} ê_surrogate(Q) + sqrt(B_RE(w, s, λ; δ)/2)`` (their §3; the McAllester
       square-root form of the bound, from Pinsker's inequality) for ``steps`` minibatch steps of
       ``optimizer`` (``"rmsprop"``, their choice, or ``"adam"``) at ``lr`` (multiplied by ``lr_factor`` after
       ``lr_drop_at`` of the steps, as their code drops it). ``w`` starts at the trained weights, the posterior
       standard deviations at ``init_std_scale·|w_i|`` (their code: ``2|w|``; here at least ``10⁻³``, so a
       weight that is exactly 0 does not start with a vanishing variance) and the prior's at
       ``exp(init_log_prior_std)`` (theirs: ``e^{−3}``); standard deviations are optimized as logarithms.
       ``ê_surrogate`` is the cross-entropy divided by ``ln 2`` (for one logit, the logistic loss ``ln(1 +
       e^{−yz})/ln 2``, their surrogate), which is at least the 0–1 error. Each step draws one weight vector
       ``w + sqrt(s)·ε`` for its minibatch (the reparametrization trick). ``λ`` is projected back to
       ``≤ c·e^{−1/b}`` (grid index ``j ≥ 1``) after every step, and ``2 ln(b ln(c/λ))`` is used with
       fractional ``j``.
    2. *Round* ``λ`` to the grid ``c·exp(−j/b)``: both neighbouring ``j`` are tried and the one with the
       smaller ``KL + 2 ln j`` kept (each ``j`` is covered by the union bound, so choosing is free).
    3. *Estimate* the stochastic training error from ``mc_samples`` fresh weight draws (each evaluated on the
       whole training set) and bound it by :func:`sample_convergence_bound` at ``δ'``.
    4. *Bound*: :func:`pac_bayes_kl_bound`, valid with probability ``≥ 1 − δ − δ'``.

    ``init`` is the prior mean ``w0``: a flat vector or a net of the same shape, fixed before training. The
    stochastic test error (``test_mc_samples`` draws) and the deterministic errors of ``w`` are also measured.
    On the CPU the minibatch loop runs on ``loop_threads`` threads (:func:`cpu_threads`; ``None`` keeps
    torch's setting): its operations are too small to gain from more, and on a busy machine threads that wait
    for each other slow it five- to fifty-fold; the Monte Carlo products use torch's setting. Departures from
    the paper: the theorem is used as they state it (``ln(m/δ)/(m − 1)``); the optimization budget, the
    minibatch draws (a random permutation per epoch) and ``mc_samples`` are the caller's (the paper trains for
    hundreds of epochs and draws 150,000 nets). Only MLPs of ``nn.Linear`` and
    ``nn.ReLU`` layers are supported (:class:`FlatMLP`).
    """
    start_all = time.perf_counter()
    m = len(train)
    _check_options(m, delta, delta_prime, mc_samples, test_mc_samples, steps, batch_size, lr, c, b)
    if optimizer not in ("rmsprop", "adam"):
        raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {optimizer!r}")
    if not init_std_scale > 0:
        raise ValueError(f"init_std_scale must be positive, got {init_std_scale}")
    rho_max = 0.5 * (math.log(c) - 1 / b)  # λ ≤ c·e^(−1/b): grid index ≥ 1
    if not init_log_prior_std <= rho_max:
        raise ValueError(f"the initial prior variance exp(2·{init_log_prior_std}) must be ≤ c·e^(−1/b) = "
                         f"{math.exp(2 * rho_max):.4g}")
    device = get_device(device)
    f = FlatMLP(net)
    w_trained = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).to(device, torch.float32)
    w0 = (torch.cat([p.detach().reshape(-1) for p in init.parameters()]) if isinstance(init, nn.Module)
          else torch.as_tensor(init)).to(device, torch.float32)
    if w0.shape != w_trained.shape:
        raise ValueError(f"the initialization has {w0.numel()} parameters but the net has {w_trained.numel()}")
    train_dev = train.to(device)
    test_dev = test.to(device) if test is not None else None
    init_train = float(error_rates(f, w_trained, train_dev)[0])
    init_test = float(error_rates(f, w_trained, test_dev)[0]) if test is not None else math.nan

    w = w_trained.clone().requires_grad_(True)
    log_std = torch.log((init_std_scale * w_trained.abs()).clamp_min(1e-3)).requires_grad_(True)
    rho = torch.tensor(float(init_log_prior_std), device=device, requires_grad=True)
    params = [w, log_std, rho]
    opt = torch.optim.RMSprop(params, lr=lr) if optimizer == "rmsprop" else torch.optim.Adam(params, lr=lr)
    const = math.log(math.pi ** 2 * m / (6 * delta))
    gen = torch.Generator(device=device).manual_seed(seed)  # on the device: no host-to-device copy per step
    history = {k: [] for k in ("step", "surrogate", "kl", "sqrt_bre_half", "prior_variance", "objective")}
    every = max(1, steps // max(1, history_points))
    order, pos, dropped = None, m, False
    bar = Progress(steps, desc, enabled=progress)
    t0 = time.perf_counter()
    with cpu_threads(loop_threads if device.type == "cpu" else None):
        for step in range(steps):
            if not dropped and step >= lr_drop_at * steps:
                for group in opt.param_groups:
                    group["lr"] = lr * lr_factor
                dropped = True
            if pos + batch_size > m:
                order, pos = torch.randperm(m, generator=gen, device=device), 0
            index = order[pos: pos + batch_size]
            pos += batch_size
            eps = torch.randn(w.numel(), generator=gen, device=device)
            theta = w + torch.exp(log_std) * eps
            surrogate = cross_entropy(f(theta, train_dev.X[index]), train_dev.y[index]).mean() / LN2
            kl = gaussian_kl(w, log_std, w0, rho)
            log_term = 2 * torch.log(b * (math.log(c) - 2 * rho)) + const
            bound_term = torch.sqrt(bre(kl, log_term, m) / 2)
            objective = surrogate + bound_term
            if not torch.isfinite(objective):
                raise FloatingPointError(f"the objective became {objective.item()} at step {step}: lower lr (lr={lr})")
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            with torch.no_grad():
                rho.clamp_(max=rho_max)  # back onto the grid's range: j = b·ln(c/λ) ≥ 1
            if step % every == 0 or step == steps - 1:
                values = (step, surrogate.item(), kl.item(), bound_term.item(), math.exp(2 * rho.item()),
                          objective.item())
                for key, value in zip(history, values):
                    history[key].append(value)
                bar.info = {"objective": values[5], "KL": values[2]}
            bar.update(1)
    bar.close(total=steps)
    seconds_optimize = time.perf_counter() - t0

    # Round λ to the grid: of the two neighbouring indices, keep the one with the smaller KL + 2 ln j.
    t1 = time.perf_counter()
    w_final, log_std_final = w.detach().double(), log_std.detach().double()
    lam_opt = math.exp(2 * rho.item())
    candidates = []
    for j in round_to_grid(lam_opt, c, b):
        lam_j = prior_variance(j, c, b)
        kl_j = float(gaussian_kl(w_final, log_std_final, w0.double(), 0.5 * math.log(lam_j)))
        candidates.append((kl_j + union_log_term(j, m, delta, b), j, lam_j, kl_j))
    _, j, lam, kl_value = min(candidates)
    log_term_value = union_log_term(j, m, delta, b)

    # Monte Carlo: the stochastic net's errors, from draws independent of the optimization.
    std = torch.exp(log_std.detach())
    wd = w.detach()
    mc_gen = torch.Generator(device=device).manual_seed(seed + 1)
    draws = stochastic_error_draws(f, wd, std, train_dev, mc_samples, mc_gen, batch=mc_batch)
    mc_error = float(draws.mean())
    upper = float(sample_convergence_bound(mc_error, mc_samples, delta_prime))
    if test is not None and test_mc_samples:
        test_error_stoch = float(stochastic_error_draws(f, wd, std, test_dev, test_mc_samples, mc_gen,
                                                        batch=mc_batch).mean())
    else:
        test_error_stoch = math.nan
    final_train = float(error_rates(f, wd, train_dev)[0])
    final_test = float(error_rates(f, wd, test_dev)[0]) if test is not None else math.nan
    bound = float(pac_bayes_kl_bound(upper, kl_value, m, delta, j, b))
    seconds_mc = time.perf_counter() - t1
    return PacBayesBound(
        bound=bound, stochastic_train_error=mc_error, stochastic_train_error_upper=upper,
        stochastic_test_error=test_error_stoch, train_error=final_train, test_error=final_test,
        initial_train_error=init_train, initial_test_error=init_test, kl=kl_value, log_term=log_term_value,
        bre=float(bre(kl_value, log_term_value, m)), mcallester_bound=mcallester_bound(upper, kl_value, m, delta, j, b),
        m=m, delta=delta, delta_prime=delta_prime, confidence=1 - delta - delta_prime, mc_samples=mc_samples,
        test_mc_samples=test_mc_samples if test is not None else 0, prior_variance=lam, prior_index=j,
        prior_variance_optimized=lam_opt, c=c, b=b, mean_posterior_std=float(std.double().mean()),
        median_posterior_std=float(std.double().median()), distance_to_init=float((wd - w0).double().norm()),
        n_params=f.n, steps=steps, seconds=time.perf_counter() - start_all, seconds_optimize=seconds_optimize,
        seconds_monte_carlo=seconds_mc, history=history)


# --------------------------------------------------------------------------------------------
# Neyshabur et al.'s bound on the same net
# --------------------------------------------------------------------------------------------


def neyshabur_bound(net: nn.Module, train: Data, alphas: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), *,
                    samples: int = 50, delta: float = 0.025, batch: int = 8, seed: int = 0,
                    device=None) -> dict:
    """Neyshabur et al.'s (2017) PAC-Bayes bound (their eq. 7, :func:`~genviz_lib.sharpness.pac_bayes_bound`)
    on the 0–1 error of a trained net, at ``σ_i = α(10|w_i| + 1)`` (their appendix A) for each ``α``.

    For each ``α``: the training error ``L̂(w)``, the expected sharpness ``E L̂(w + ν) − L̂(w)`` (``samples``
    Monte Carlo draws, :func:`~genviz_lib.sharpness.expected_sharpness`), the KL term ``Σ w_i²/(2σ_i²)``
    (:func:`~genviz_lib.sharpness.kl_term`; prior ``N(0, σ²)``) and the bound
    ``L̂(w) + sharpness + 4 sqrt((KL + ln(2m/δ'))/m)``. Choosing the best ``α`` after looking is paid for here
    by a union bound over the grid: ``δ' = δ/len(alphas)`` (``bound``); ``bound_unpaid`` uses ``δ`` itself,
    as the paper's recipe does, and is *not* a valid bound for the chosen ``α``. Two further caveats of the
    recipe, kept as they are: the prior's variances ``σ_i`` depend on the trained weights, and the Monte Carlo
    error of the expected sharpness is not bounded (its standard error is reported). Returns
    ``{"alphas", "rows" (one dict per α), "best" (the row with the smallest bound), "train_error", "m", "delta"}``.
    """
    if not alphas or min(alphas) <= 0:
        raise ValueError(f"need positive noise scales α, got {list(alphas)}")
    m = len(train)
    _check_m_delta(m, delta)
    device = get_device(device)
    f = FlatMLP(net)
    w = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).to(device, torch.float32)
    train_dev = train.to(device)
    objective = lambda T: error_rates(f, T, train_dev).to(T.dtype)
    train_err = float(error_rates(f, w, train_dev)[0])
    gen = torch.Generator().manual_seed(seed)  # expected_sharpness draws its noise on the CPU
    rows = []
    for alpha in alphas:
        sigma = sharpness.neyshabur_sigma(w, alpha)
        sharp, se = sharpness.expected_sharpness(objective, w, sigma, samples=samples, batch=batch, generator=gen)
        kl = sharpness.kl_term(w, sigma)
        rows.append(dict(alpha=float(alpha), expected_sharpness=sharp, stderr=se, kl=kl,
                         bound=sharpness.pac_bayes_bound(train_err, sharp, kl, m, delta / len(alphas)),
                         bound_unpaid=sharpness.pac_bayes_bound(train_err, sharp, kl, m, delta)))
    best = min(rows, key=lambda r: r["bound"])
    return dict(alphas=[float(a) for a in alphas], rows=rows, best=best, train_error=train_err, m=m, delta=delta)
