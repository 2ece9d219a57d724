"""Sharpness, expected sharpness and the PAC-Bayes KL term (Neyshabur et al. 2017, §2.4 and appendix A).

Everything works on a batched objective ``f(Θ) → [b]`` and a point ``w: [n]`` (see
:mod:`genviz_lib.landscape`); ``f`` is the *training* loss.

- :func:`box` — the half-widths ``α(|w_i| + 1)`` of Keskar et al.'s (2017) box.
- :func:`sharpness` — ``ζ_α(w) = max_{|ν_i| ≤ α(|w_i|+1)} L̂(w+ν) − L̂(w)`` (Neyshabur et al. eq. 4; with
  ``relative=True`` divided by ``1 + L̂(w)`` as Keskar et al. do), by projected gradient ascent.
- :func:`expected_sharpness` — ``E_{ν∼N(0, diag σ²)} L̂(w+ν) − L̂(w)``, the first term that the
  PAC-Bayes bound (eq. 7) trades against the KL term, with its standard error.
- :func:`neyshabur_sigma` — the per-parameter scale ``σ_i = α(10|w_i| + 1)`` of their appendix A.
- :func:`kl_term` — ``KL(N(w, diag σ²) ‖ N(0, diag σ²)) = Σ_i w_i² / (2σ_i²)`` (eq. 8 when σ is one number).
- :func:`pac_bayes_bound` — the right-hand side of eq. 7.
- :func:`bicriteria` — expected sharpness and KL for a list of α: the points of Neyshabur et al.'s Fig. 2
  (middle, right).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from torch.func import grad

from .landscape import Objective, loss_at


def box(w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Half-widths ``α(|w_i| + 1)`` of the box the sharpness maximizes over."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    return alpha * (w.abs() + 1)


@dataclasses.dataclass
class Sharpness:
    """The sharpness ``value``, the loss at ``w`` (``base``), the maximizing perturbation ``nu`` and the
    best value found by each restart (``per_restart``)."""

    value: float
    base: float
    nu: torch.Tensor
    per_restart: torch.Tensor


def sharpness(f: Objective, w: torch.Tensor, alpha: float = 5e-4, steps: int = 100, lr: float = 0.1,
              restarts: int = 1, relative: bool = False, generator: torch.Generator | None = None,
              return_info: bool = False):
    """Neyshabur et al.'s eq. 4 (after Keskar et al.): ``max_{|ν_i| ≤ α(|w_i|+1)} L̂(w+ν) − L̂(w)``.

    Projected gradient ascent in the box, in its own geometry: each step moves every coordinate by
    ``lr`` times its half-width in the direction of the gradient's sign, then clips back into the box
    (the ℓ∞ steepest-ascent step, so coordinates with wide boxes move as far, relatively, as narrow
    ones). The first restart starts at ``ν = 0`` (at an exact minimum the gradient vanishes there and the
    sign step is zero — hence the restarts); the others start at a uniform random point of the box. All
    restarts run together as one batch; the best loss seen anywhere is returned, so the value is a lower
    bound on the true maximum that tightens with ``steps`` and ``restarts``. The default ``α = 5·10⁻⁴``
    is the paper's. ``relative=True`` divides by ``1 + L̂(w)`` (Keskar et al.'s form).
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"need steps ≥ 1 and restarts ≥ 1, got {steps} and {restarts}")
    base = loss_at(f, w)
    half = box(w, alpha)
    start = torch.rand(restarts, w.numel(), generator=generator, dtype=w.dtype).to(w.device) * 2 - 1
    start[0] = 0
    nu = start * half
    def total(V):
        losses = f(w[None] + V)
        return losses.sum(), losses

    best = torch.full((restarts,), -math.inf, dtype=base.dtype, device=w.device)
    best_nu = nu.clone()
    for step in range(steps + 1):
        if step < steps:
            g, losses = grad(total, has_aux=True)(nu)
        else:
            with torch.no_grad():
                losses = f(w[None] + nu)
        better = losses.detach() > best
        best = torch.where(better, losses.detach(), best)
        best_nu[better] = nu[better]
        if step < steps:
            nu = torch.maximum(torch.minimum(nu + lr * half * g.sign(), half), -half)
    k = int(best.argmax())
    value = (best[k] - base).item()
    if relative:
        value /= 1 + base.item()
    if not return_info:
        return value
    return Sharpness(value=value, base=base.item(), nu=best_nu[k], per_restart=best - base)


def neyshabur_sigma(w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-parameter standard deviations ``σ_i = α(10|w_i| + 1)`` (Neyshabur et al., appendix A)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    return alpha * (10 * w.abs() + 1)


def expected_sharpness(f: Objective, w: torch.Tensor, sigma, samples: int = 1000, batch: int = 100,
                       generator: torch.Generator | None = None) -> tuple[float, float]:
    """``E_{ν∼N(0, diag σ²)} L̂(w+ν) − L̂(w)`` by Monte Carlo: ``(estimate, standard error)``.

    ``sigma`` is one number or a tensor ``[n]`` (e.g. :func:`neyshabur_sigma`). The perturbed losses are
    evaluated ``batch`` at a time through the batched objective.
    """
    base = loss_at(f, w)
    sigma = torch.as_tensor(sigma, dtype=w.dtype, device=w.device)
    if sigma.ndim not in (0, 1) or (sigma.ndim == 1 and sigma.shape != w.shape) or bool((sigma < 0).any()):
        raise ValueError("sigma must be a non-negative number or a tensor shaped like w")
    values = []
    with torch.no_grad():
        for start in range(0, samples, batch):
            b = min(batch, samples - start)
            noise = torch.randn(b, w.numel(), generator=generator, dtype=w.dtype).to(w.device)
            values.append(f(w[None] + noise * sigma) - base)
    values = torch.cat(values).double()
    return values.mean().item(), (values.std() / math.sqrt(samples)).item() if samples > 1 else math.nan


def kl_term(w: torch.Tensor, sigma) -> float:
    """``KL(N(w, diag σ²) ‖ N(0, diag σ²)) = Σ_i w_i² / (2σ_i²)``: posterior centred at the weights, prior at 0,
    both with the perturbation's variances (Neyshabur et al. eq. 8 and appendix A)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=w.device)
    if bool((sigma <= 0).any()):
        raise ValueError("sigma must be positive")
    return float((w.double().pow(2) / (2 * sigma.pow(2))).sum())


def pac_bayes_bound(train_loss: float, expected_sharpness: float, kl: float, m: int, delta: float = 0.05) -> float:
    """Neyshabur et al. eq. 7: ``L̂(w) + (E L̂(w+ν) − L̂(w)) + 4·sqrt((KL + ln(2m/δ))/m)`` for ``m`` training
    points, holding with probability ``1 − δ`` (for a loss bounded by 1, e.g. the 0/1 error)."""
    if m < 1 or not 0 < delta < 1:
        raise ValueError(f"need m ≥ 1 and 0 < δ < 1, got {m}, {delta}")
    return train_loss + expected_sharpness + 4 * math.sqrt((kl + math.log(2 * m / delta)) / m)


@dataclasses.dataclass
class BiCriteria:
    """Per ``alpha``: the expected sharpness, its standard error and the KL term (Neyshabur et al. Fig. 2)."""

    alphas: torch.Tensor
    expected_sharpness: torch.Tensor
    stderr: torch.Tensor
    kl: torch.Tensor


def bicriteria(f: Objective, w: torch.Tensor, alphas: Sequence[float], samples: int = 1000, batch: int = 100,
               generator: torch.Generator | None = None) -> BiCriteria:
    """Expected sharpness under ``σ_i = α(10|w_i| + 1)`` and the matching KL term, for each ``α``.

    Small α: little sharpness, a large KL (the weights are many σ from the prior's centre); large α:
    the reverse. Plotting one against the other for two nets compares them without choosing α.
    """
    if len(alphas) == 0:
        raise ValueError("give at least one alpha")
    rows = []
    for alpha in alphas:
        sigma = neyshabur_sigma(w, alpha)
        mean, se = expected_sharpness(f, w, sigma, samples, batch, generator)
        rows.append((alpha, mean, se, kl_term(w, sigma)))
    a, s, e, k = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows))
    return BiCriteria(alphas=a, expected_sharpness=s, stderr=e, kl=k)
