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


def _evaluate(f: Objective, theta, directions, t, start, index=None, check=True) -> torch.Tensor:
    """``f(θ + t_i·d_i)``; ``index`` maps rows back to direction numbers (offset by ``start``) for errors."""
    with torch.no_grad():
        values = f(torch.addcmul(theta[None], t[:, None], directions)).to(torch.float64)
    if check:
        _check_finite(values, t, start, index)
    return values


def _check_finite(values, t, start, index=None):
    bad = ~torch.isfinite(values)
    if bad.any():
        i = int(bad.nonzero()[0])
        which = start + (int(index[i]) if index is not None else i)
        raise ValueError(f"the loss is {values[i].item()} along direction {which} at distance "
                         f"{t[i].item():.4g}: check the model and data, or lower r_max")


PILOT = 16  # without r_min: directions bracketed on a grid from r_max·2⁻³⁰; the others start at their median radius
OVERSHOOT = 0.05  # a bracketing step aimed at the crossing goes this much (relative) past it, plus 0.3·rtol


def _interpolate(lo, hi, c, glo, ghi, gc):
    """The next estimate of the root of ``g`` in ``[lo, hi]`` from ``g`` at both ends and at a third point
    ``c`` outside, next to the end of its sign: inverse quadratic interpolation through the three where
    the inverse is monotone on ``[lo, hi]`` (Chandrupatla's test), else false position (the secant through
    the ends). NaN in ``gc`` gives false position."""
    near_hi = gc >= 0
    a, ga = torch.where(near_hi, hi, lo), torch.where(near_hi, ghi, glo)
    b, gb = torch.where(near_hi, lo, hi), torch.where(near_hi, glo, ghi)
    xi, phi = (a - b) / (c - b), (ga - gb) / (gc - gb)
    iqi = (phi ** 2 < xi) & ((1 - phi) ** 2 < 1 - xi)
    s = ga / (gb - ga) * gc / (gb - gc) + (c - a) / (b - a) * ga / (gc - ga) * gb / (gc - gb)
    s = torch.where(iqi & torch.isfinite(s), s, ga / (ga - gb))
    return a + s * (b - a)


def _log(t):
    return t.clamp_min(1e-300).log()


class _Rays:
    """The search along ``k`` unit directions for ``c`` cutoffs; every state tensor is ``[c, k]``.

    ``lo < radius ≤ hi`` with ``g = f − cutoff`` below zero at ``lo`` and at or above zero at ``hi``
    (``glo``, ``ghi``); ``lo = 0`` stands for the point itself, where ``g = f(θ) − cutoff < 0`` is known.
    ``c`` (with ``gc``) is the end the last probe replaced: a third point for interpolation, outside
    ``[lo, hi]`` next to the end of its sign. ``h = log((f − f(θ))/(cutoff − f(θ)))`` is ``g`` on the
    scale where a loss growing like a power of the distance is a straight line against ``log t``.
    """

    def __init__(self, f, theta, units, offset, cutoffs, base, rtol, r_max, growth):
        self.f, self.theta, self.units, self.offset = f, theta, units, offset
        self.cutoffs, self.rtol, self.growth, self.r_max = cutoffs, rtol, growth, r_max
        self.scale = cutoffs - base
        c, k = len(cutoffs), len(units)
        self.lo = torch.zeros(c, k, dtype=torch.float64)
        self.hi = torch.full((c, k), math.inf, dtype=torch.float64)
        self.c = torch.zeros(c, k, dtype=torch.float64)
        self.glo = (base - cutoffs)[:, None].repeat(1, k)
        self.ghi = torch.zeros(c, k, dtype=torch.float64)
        self.gc = self.glo.clone()
        self.cap = torch.zeros(c, k, dtype=torch.bool)
        self.t_max = float(self._round(torch.tensor([r_max], dtype=torch.float64)))
        self.min_step = max(0.9 * rtol, 8 * torch.finfo(theta.dtype).eps)
        self.evaluations = 0

    def _round(self, t):
        """``t`` as the objective sees it (in ``θ``'s dtype), so that brackets hold the points evaluated."""
        return t.to(self.theta.dtype).to(torch.float64)

    def _h(self, ci, g):
        return torch.log1p(g / self.scale[ci])  # NaN or −inf where f ≤ f(θ)

    def g(self, ci, di, t, check=True):
        """``f(θ + t·φ_d) − cutoff_c`` for pairs ``(c, d)``; each distinct ``(d, t)`` is evaluated once. A
        non-finite loss is an error naming the direction, unless ``check=False``."""
        # sort the pairs by direction, then distance, and keep the first of each run of equal ones
        order = torch.argsort(t, stable=True)
        order = order[torch.argsort(di[order], stable=True)]
        d, tt = di[order], t[order]
        first = torch.ones(len(d), dtype=torch.bool)
        first[1:] = (d[1:] != d[:-1]) | (tt[1:] != tt[:-1])
        inverse = torch.empty_like(order)
        inverse[order] = first.cumsum(0) - 1
        d, tt = d[first], tt[first]
        rows = self.units if len(d) == len(self.units) else self.units[d.to(self.units.device)]  # all, in order
        values = _evaluate(self.f, self.theta, rows, tt.to(self.theta.device, self.theta.dtype), self.offset, d,
                           check)
        self.evaluations += len(d)
        return values.cpu()[inverse] - self.cutoffs[ci]

    def _replace(self, ci, di, x, g):
        """Put probe ``x`` in place of the end of its sign; the end it replaces becomes ``c``."""
        up = g >= 0
        end = torch.where(up, self.hi[ci, di], self.lo[ci, di])
        gend = torch.where(up, self.ghi[ci, di], self.glo[ci, di])
        keep = torch.isfinite(end)  # the first probe above the cutoff replaces no point
        self.c[ci[keep], di[keep]], self.gc[ci[keep], di[keep]] = end[keep], gend[keep]
        self.hi[ci[up], di[up]], self.ghi[ci[up], di[up]] = x[up], g[up]
        self.lo[ci[~up], di[~up]], self.glo[ci[~up], di[~up]] = x[~up], g[~up]
        return up

    def bracket(self, ci, di, start, q=None):
        """Bracket pairs ``(ci, di)`` from ``start [len(ci)]``: shrink while the loss is at or above the
        cutoff, grow while it is below (up to ``r_max``), by a factor between ``exp(0.9·rtol)`` and
        ``growth`` a probe.

        A step aims at the crossing, ``OVERSHOOT`` past it, along the straight line in ``(log t, h)``:
        the secant through the last two probes, or for the first probe the slope ``1/q[c]`` (a pilot's);
        where there is no such line (no ``q``, the loss at or below ``f(θ)``, or not rising between the
        probes) the step is ``growth``."""
        t = self._round(start.clamp(max=self.r_max))
        u_prev = torch.full_like(t, math.nan)
        h_prev = torch.full_like(t, math.nan)
        tiny = self.t_max * 2.0 ** -80
        log_growth = math.log(self.growth)
        while len(ci):
            g = self.g(ci, di, t)
            up = self._replace(ci, di, t, g)
            found = torch.isfinite(self.hi[ci, di]) & (self.lo[ci, di] > 0)
            capped = ~up & (t >= self.t_max)
            self.cap[ci[capped], di[capped]] = True
            u, h = t.log(), self._h(ci, g)
            slope = (h - h_prev) / (u - u_prev)
            aim = torch.where(torch.isfinite(slope) & (slope > 0), -h / slope, math.nan)
            if q is not None:
                aim = torch.where(torch.isnan(u_prev), -h * q[ci], aim)
            aim = aim.abs() * (1 + OVERSHOOT) + 0.3 * self.rtol
            step = torch.where(torch.isfinite(aim), aim, log_growth).clamp(self.min_step, log_growth)
            nxt = self._round((u + torch.where(up, -step, step)).exp().clamp(max=self.r_max))
            # above the cutoff however close to θ (a discontinuous loss): keep lo = 0, the point itself
            vanished = up & (nxt < tiny)
            go = ~(found | capped | vanished)
            ci, di, t, u_prev, h_prev = ci[go], di[go], nxt[go], u[go], h[go]

    def grid(self, ci, di, start, block=8):
        """Bracket pairs ``(ci, di)`` on the grid ``start·growthᵏ``, k = 0, 1, … (capped at ``r_max``): the
        bracket ends at the first grid point where the loss reaches the cutoff, as growing one step at a
        time would, but ``block`` grid points a call. A pair above the cutoff at ``start`` shrinks from
        there as in :meth:`bracket`."""
        t = start
        while len(ci):
            n = len(ci)
            T = self._round((t[:, None] * self.growth ** torch.arange(block, dtype=torch.float64)).clamp(max=self.r_max))
            G = self.g(ci.repeat_interleave(block), di.repeat_interleave(block), T.reshape(-1), check=False)
            G = G.reshape(n, block)
            above = G >= 0
            first = torch.where(above.any(1), above.int().argmax(1), block)  # first grid point above, or none
            # a loss that is not finite up to that point is an error; beyond it, it is never looked at
            seen = torch.arange(block)[None] <= first[:, None]
            bad = ~torch.isfinite(G) & seen
            if bad.any():
                row = int(bad.any(1).nonzero()[0])
                col = int(bad[row].nonzero()[0])
                _check_finite(G[row, col: col + 1], T[row, col: col + 1], self.offset, di[row: row + 1])
            for j in range(block):
                now = seen[:, j]
                self._replace(ci[now], di[now], T[now, j], G[now, j])
            capped = (first == block) & (T[:, -1] >= self.t_max)
            self.cap[ci[capped], di[capped]] = True
            go = (first == block) & ~capped
            ci, di, t = ci[go], di[go], T[go, -1] * self.growth
        # already above the cutoff at the first grid point: shrink
        shrink = (self.lo == 0) & torch.isfinite(self.hi)
        sc, sd = shrink.nonzero(as_tuple=True)
        self.bracket(sc, sd, self.hi[sc, sd] / self.growth)

    def pilot(self, k):
        """``(start, q)`` per cutoff from the brackets of directions ``0 … k−1``: the median of their radii
        estimated along the line in ``(log t, h)`` through the ends (``r_max`` for a direction at the cap),
        and the median of ``1/slope`` of those lines (NaN where none has one)."""
        lo, hi, glo, ghi, cap = (v[:, :k] for v in (self.lo, self.hi, self.glo, self.ghi, self.cap))
        s = self.scale[:, None]
        q = (hi / lo).log() / (torch.log1p(ghi / s) - torch.log1p(glo / s))
        ok = torch.isfinite(q) & (q > 0) & ~cap
        estimate = torch.where(ok, lo * torch.exp(-torch.log1p(glo / s) * q), hi)
        estimate = torch.where(cap, self.r_max, estimate)
        return estimate.quantile(0.5, dim=1), torch.where(ok, q, torch.nan).nanmedian(dim=1).values

    def refine(self):
        """Narrow every open bracket until ``hi − lo ≤ rtol·hi``, one probe per pair a step: the
        interpolated estimate (:func:`_interpolate` on ``h`` against ``log t`` where ``lo > 0`` and
        ``f(lo) > f(θ)``, else on ``g`` against ``t``), or, where it lies within ``0.63·rtol`` of an
        end, ``0.9·rtol`` from that end (just past the crossing, which closes the bracket), or the
        midpoint after three probes that have not halved the bracket."""
        rtol = self.rtol
        c, k = self.lo.shape
        ref = self.hi - self.lo  # the width at the last halving
        slow = torch.zeros(c, k, dtype=torch.int64)  # probes since then
        done = self.cap.clone()
        while True:
            open_ = ~done & (self.hi - self.lo > rtol * self.hi)
            if not open_.any():
                break
            ci, di = open_.nonzero(as_tuple=True)
            lo, hi, glo, ghi, p, gp = (v[ci, di] for v in (self.lo, self.hi, self.glo, self.ghi, self.c, self.gc))
            hlo, hhi, hp = self._h(ci, glo), self._h(ci, ghi), self._h(ci, gp)
            hp = torch.where((p > 0) & torch.isfinite(hp), hp, math.nan)
            x = _interpolate(_log(lo), _log(hi), _log(p), hlo, hhi, hp).exp()
            x = torch.where((lo > 0) & torch.isfinite(hlo) & torch.isfinite(x), x,
                            _interpolate(lo, hi, p, glo, ghi, gp))
            x = torch.where((slow[ci, di] >= 3) | ~torch.isfinite(x), 0.5 * (lo + hi), x)
            w_lo, w_hi = self.min_step * lo, self.min_step * hi  # 0.9·rtol, or what θ's dtype resolves
            x = torch.where(x - lo < 0.7 * w_lo, lo + w_lo, x)
            x = torch.where(hi - x < 0.7 * w_hi, hi - w_hi, x)
            x = self._round(x)
            x = torch.where((x <= lo) | (x >= hi), self._round(0.5 * (lo + hi)), x)
            stuck = (x <= lo) | (x >= hi)  # the bracket is as narrow as θ's dtype resolves
            done[ci[stuck], di[stuck]] = True
            ci, di, x = ci[~stuck], di[~stuck], x[~stuck]
            self._replace(ci, di, x, self.g(ci, di, x))
            width = self.hi[ci, di] - self.lo[ci, di]
            halved = width <= 0.5 * ref[ci, di]
            ref[ci, di] = torch.where(halved, width, ref[ci, di])
            slow[ci, di] = torch.where(halved, 0, slow[ci, di] + 1)

    def radii(self):
        return torch.where(self.cap, self.r_max, self.hi)


def basin_radius(f: Objective, theta: torch.Tensor, directions: torch.Tensor, cutoff: float | Sequence[float],
                 rtol: float = 1e-3, r_max: float | None = None, r_min: float | None = None,
                 growth: float = 2.0, chunk: int = 4096) -> Radii:
    """Radii of the basin around ``theta`` along each direction (normalized to unit length here).

    The radius along ``φ`` is the smallest ``t > 0`` with ``g(t) = f(θ + tφ) − cutoff ≥ 0``. All
    directions (``chunk`` at a time) and all ``cutoff`` values are searched together, one batched call
    of ``f`` per step, in two stages:

    1. *Bracketing*, to ``lo < t ≤ hi`` with the loss below the cutoff at ``lo`` and at or above it at
       ``hi``. With ``r_min`` given, every direction starts at ``r_min``. Without it, a pilot of the
       first 16 directions is bracketed on the grid ``r_max·2⁻³⁰·growthᵏ``, ending at the first grid
       point where the loss reaches the cutoff (the probes of growing one step at a time from
       ``r_max·2⁻³⁰``, 8 grid points a call), and every other direction starts at the pilot's median
       radius for its cutoff. From its start a direction shrinks while the loss is at or above the
       cutoff and grows while it is below, never by more than ``growth`` a probe (``r_max`` caps the
       growth). Each step aims at the crossing, 5 % past it, on the line through the last two probes
       in ``(log t, log(f − f(θ)))`` — where the loss grows like a power of the distance, as near a
       minimum, that line is straight — or, for a direction's first step, with the slope of the
       pilot's lines (their median); where there is no such line the step is ``growth``.
    2. *Root-finding* inside each bracket: inverse quadratic interpolation through the two ends and
       the point the last probe replaced where Chandrupatla's test finds the inverse monotone, else
       false position (both in ``(log t, log(f − f(θ)))`` where the loss at ``lo`` is above
       ``f(θ)``, else in ``(t, g)``); superlinear, with a bisection step whenever three probes have not
       halved the bracket. An estimate within ``0.63·rtol`` of an end is moved to ``0.9·rtol`` from it,
       past the crossing, so that both ends close. It stops when ``hi − lo ≤ rtol·hi`` (or when ``θ``'s
       dtype cannot resolve the bracket further) and reports ``hi``: the loss at the reported radius is
       at or above the cutoff, and below it at a point at most ``rtol·hi`` inside.

    What is guaranteed is a crossing of the cutoff inside the final bracket, at most ``rtol`` (relative)
    below the reported radius. It is the *first* crossing along the ray when the loss stays below the
    cutoff between ``θ`` and ``lo`` — for example, when it increases along the ray. No probing scheme
    sees what happens between its probes: bracketing up passes over a bump above the cutoff narrower
    than its steps, and bracketing down from a start above the cutoff stops at the first probe below
    it, which may lie in a dip beyond the first crossing. Steps are never coarser than ``growth``; a
    small ``r_min`` makes every direction bracket up from near ``θ``, as the pilot does.

    Cost: a pilot direction takes ``log₂(radius/(r_max·2⁻³⁰))`` (≈ 20) grid points to bracket, rounded
    up to a multiple of 8, every other one 2–3 probes to bracket, and all of them 2–3 to close: about 5
    evaluations per direction and cutoff for 1,000 directions at ``rtol = 1e-3`` (against about 30 for
    bracketing every direction from ``r_max·2⁻³⁰`` and bisecting), in about 12 calls of ``f``; a
    tighter ``rtol`` adds about one. ``evaluations`` counts them (probes of one direction at one
    distance for several cutoffs count once).

    Radii are capped at ``r_max`` (default ``100·max(‖θ‖, 1)``) and the directions at the cap are
    reported. Raises ``ValueError`` when a cutoff is at or below ``f(theta)`` (the point is not inside
    a basin), when the loss is not finite along a direction, and when every direction reaches
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
    units = directions / directions.norm(dim=1, keepdim=True)
    m, c = len(units), len(cutoffs)
    radii = torch.empty(c, m, dtype=torch.float64)
    capped = torch.zeros(c, m, dtype=torch.bool)
    evaluations = 0

    start = None if r_min is None else torch.full((c,), float(r_min), dtype=torch.float64)
    q = None
    for begin in range(0, m, chunk):
        end = min(begin + chunk, m)
        rays = _Rays(f, theta, units[begin:end], begin, cutoffs, base, rtol, r_max, growth)
        ci, di = torch.ones(c, end - begin, dtype=torch.bool).nonzero(as_tuple=True)
        if start is None:  # the pilot: the first directions, on the grid from r_max·2⁻³⁰
            k = min(PILOT, end - begin)
            pilot = di < k
            rays.grid(ci[pilot], di[pilot], torch.full((int(pilot.sum()),), r_max * 2.0 ** -30, dtype=torch.float64))
            start, q = rays.pilot(k)
            ci, di = ci[~pilot], di[~pilot]
        rays.bracket(ci, di, start[ci], q)
        rays.refine()
        radii[:, begin:end], capped[:, begin:end] = rays.radii(), rays.cap
        evaluations += rays.evaluations
    if capped.all():
        raise ValueError(f"every direction reached r_max = {r_max:g} without the loss reaching the cutoff: "
                         "raise r_max (or the cutoff is too high for this objective)")
    if single:
        radii, capped = radii[0], capped[0]
    return Radii(radii, capped, cutoffs, r_max, evaluations)
