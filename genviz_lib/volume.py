"""Basin radius and log-volume (Huang et al. 2019, §4 and Fig. 5; Wu et al. 2017, eq. 5).

The *radius* of the basin around a minimizer ``θ`` along a unit direction ``φ`` is the smallest
``t > 0`` with ``L(θ + tφ) ≥ cutoff`` (:func:`basin_radius`). For a star-shaped basin the volume is
``V = ω_n · E_φ[r(φ)^n]`` with ``φ`` uniform on the unit sphere and ``ω_n`` the volume of the unit
ball; :func:`log_volume` estimates ``log V`` from sampled radii with ``logsumexp`` (``r**n``
under- or overflows for any real network). For large ``n`` the mean of ``r^n`` is dominated by the
largest radii sampled, so the estimate is really a statement about the widest directions found;
:func:`log_volume_interval` puts a bootstrap interval on it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from .landscape import Objective, loss_at


@dataclasses.dataclass
class Radii:
    """Radii ``[m]`` (or ``[c, m]`` for ``c`` cutoffs) along unit directions, with bookkeeping.

    ``at_cap`` marks the directions where the loss stayed below the cutoff up to ``r_max`` (their
    radius is reported as ``r_max``, a lower bound); ``evaluations`` counts objective evaluations.
    """

    radii: torch.Tensor
    at_cap: torch.Tensor
    cutoffs: torch.Tensor
    r_max: float
    evaluations: int

    @property
    def n_at_cap(self):
        return self.at_cap.sum(-1)


def log_unit_ball_volume(n: int) -> float:
    """``log ω_n = (n/2)·log π − lgamma(1 + n/2)``, the log-volume of the unit ball in ``n`` dimensions."""
    if n < 1:
        raise ValueError(f"dimension must be ≥ 1, got {n}")
    return 0.5 * n * math.log(math.pi) - math.lgamma(1 + 0.5 * n)


def log_volume(radii: torch.Tensor, n: int) -> torch.Tensor:
    """``log(ω_n · mean r^n)`` along the last dimension of ``radii``, computed with ``logsumexp``."""
    radii = torch.as_tensor(radii, dtype=torch.float64)
    if (radii <= 0).any():
        raise ValueError("radii must be positive")
    m = radii.shape[-1]
    return log_unit_ball_volume(n) + torch.logsumexp(n * radii.log(), -1) - math.log(m)


def log_volume_interval(radii: torch.Tensor, n: int, samples: int = 2000, level: float = 0.95,
                        generator: torch.Generator | None = None) -> tuple[float, float, float]:
    """``(estimate, low, high)``: :func:`log_volume` with a percentile bootstrap interval over directions."""
    radii = torch.as_tensor(radii, dtype=torch.float64).reshape(-1)
    index = torch.randint(len(radii), (samples, len(radii)), generator=generator)
    boot = log_volume(radii[index], n)
    alpha = (1 - level) / 2
    low, high = torch.quantile(boot, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return float(log_volume(radii, n)), low, high


def _evaluate(f: Objective, theta, directions, t, start, index=None) -> torch.Tensor:
    """``f(θ + t_i·d_i)``; ``index`` maps rows back to direction numbers (offset by ``start``) for errors."""
    with torch.no_grad():
        values = f(theta[None] + t[:, None] * directions).to(torch.float64)
    bad = ~torch.isfinite(values)
    if bad.any():
        i = int(bad.nonzero()[0])
        which = start + (int(index[i]) if index is not None else i)
        raise ValueError(f"the loss is {values[i].item()} along direction {which} at distance "
                         f"{t[i].item():.4g}: check the model and data, or lower r_max")
    return values


def basin_radius(f: Objective, theta: torch.Tensor, directions: torch.Tensor, cutoff: float | Sequence[float],
                 rtol: float = 1e-3, r_max: float | None = None, r_min: float | None = None,
                 growth: float = 2.0, chunk: int = 4096) -> Radii:
    """Radii of the basin around ``theta`` along each direction (normalized to unit length here).

    Bracketing then bisection: ``t`` grows geometrically (×``growth``) from ``r_min`` until the loss
    reaches the cutoff, then the bracket is halved until its width is at most ``rtol`` times its
    upper end. All directions are evaluated together, ``chunk`` at a time. Several ``cutoff`` values
    share the bracketing pass and give radii ``[c, m]``. Radii are capped at ``r_max`` (default
    ``100·max(‖θ‖, 1)``) and the directions at the cap are reported.

    Raises ``ValueError`` when a cutoff is at or below ``f(theta)`` (the point is not inside a
    basin), when the loss is not finite along a direction, and when every direction reaches
    ``r_max`` (raise ``r_max``).
    """
    single = not isinstance(cutoff, (list, tuple, torch.Tensor))
    cutoffs = torch.as_tensor([cutoff] if single else list(cutoff), dtype=torch.float64).reshape(-1)
    if directions.ndim != 2 or directions.shape[1] != theta.numel():
        raise ValueError(f"directions must be [m, {theta.numel()}], got {tuple(directions.shape)}")
    if rtol <= 0 or growth <= 1:
        raise ValueError("need rtol > 0 and growth > 1")
    base = float(loss_at(f, theta))
    if not cutoffs.min() > base:
        raise ValueError(f"the cutoff {cutoffs.min().item():g} is at or below the loss at the point itself "
                         f"({base:.6g}): the point is not inside a basin of that cutoff; choose a larger cutoff")
    r_max = float(r_max if r_max is not None else 100 * max(theta.norm().item(), 1.0))
    r_min = float(r_min if r_min is not None else r_max * 2.0 ** -30)
    units = directions / directions.norm(dim=1, keepdim=True)
    m = len(units)
    radii = torch.empty(len(cutoffs), m, dtype=torch.float64)
    capped = torch.zeros(len(cutoffs), m, dtype=torch.bool)
    evaluations = 0
    for start in range(0, m, chunk):
        d = units[start: start + chunk]
        k = len(d)
        # Bracketing: lo[c] < radius ≤ hi[c] for each direction.
        lo = torch.zeros(len(cutoffs), k, dtype=torch.float64)
        hi = torch.full((len(cutoffs), k), math.inf, dtype=torch.float64)
        t = r_min
        while True:
            t = min(t, r_max)
            values = _evaluate(f, theta, d, torch.full((k,), t, dtype=theta.dtype, device=theta.device), start)
            evaluations += k
            above = values[None, :] >= cutoffs[:, None]
            newly = above & torch.isinf(hi)
            hi[newly] = t
            still = torch.isinf(hi)
            lo[still] = t
            if not still.any() or t >= r_max:
                break
            t *= growth
        cap = torch.isinf(hi)
        hi[cap] = r_max
        # Bisection, one batched evaluation per step for all (cutoff, direction) pairs still open.
        open_ = ~cap & (hi - lo > rtol * hi)
        while open_.any():
            c_idx, d_idx = open_.nonzero(as_tuple=True)
            mid = 0.5 * (lo[c_idx, d_idx] + hi[c_idx, d_idx])
            values = _evaluate(f, theta, d[d_idx], mid.to(theta.dtype), start, d_idx)
            evaluations += len(d_idx)
            up = values >= cutoffs[c_idx]
            hi[c_idx[up], d_idx[up]] = mid[up]
            lo[c_idx[~up], d_idx[~up]] = mid[~up]
            open_ = ~cap & (hi - lo > rtol * hi)
        radii[:, start: start + k] = hi
        capped[:, start: start + k] = cap
    if capped.all():
        raise ValueError(f"every direction reached r_max = {r_max:g} without the loss reaching the cutoff: "
                         "raise r_max (or the cutoff is too high for this objective)")
    if single:
        radii, capped = radii[0], capped[0]
    return Radii(radii, capped, cutoffs, r_max, evaluations)
