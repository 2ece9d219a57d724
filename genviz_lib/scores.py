"""Scores of a generalization measure against the generalization gap over a factorial grid of nets.

Kendall's τ and Jiang et al.'s granulated τ are in :mod:`genviz_lib.norms` (:func:`~genviz_lib.norms.kendall_tau`,
:func:`~genviz_lib.norms.granulated_tau`). This module adds the two other scores of the chapter's table, with the
same input conventions: ``measure`` and ``gap`` hold one value per net, ``hyperparameters`` maps each
hyperparameter's name to its value for every net, and ``fixed`` maps the columns that are held fixed but not
scored (the seed) to their per-net values.

- :func:`sign_error` — Dziugaite et al. (2020)'s sign-error over *environments*, pairs of hyperparameter settings
  that differ in one hyperparameter: ``(1 − sgn(Δμ)·sgn(Δg))/2`` per coupled pair of nets, its mean per
  environment, then the mean, 90th percentile and worst (their *robust sign-error*) over environments.
- :func:`conditional_mutual_information` — Jiang et al. (2020)'s conditional-independence score: over pairs of
  nets, ``min_S I(V_μ; V_g | U_S) / H(V_g | U_S)`` with ``V = sgn(difference)`` and ``U_S`` the values of the
  hyperparameters in ``S`` for both nets of the pair.

Both check their input before any work and raise a ``ValueError`` that says what is wrong: lengths that differ,
a NaN or infinity, a hyperparameter with one value, a grid that is not factorial.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import numpy as np


def _array(x) -> np.ndarray:
    """Any sequence of numbers (list, array, tensor, pandas Series) as a flat float64 array."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1).copy()


def _is_missing(v) -> bool:
    try:
        return bool(v != v)  # NaN (float, numpy) is the only value unequal to itself
    except (TypeError, ValueError):
        return False


def _ordered_values(column: Sequence) -> list:
    """The distinct values of a column, sorted where they can be (else in order of first appearance)."""
    seen = list(dict.fromkeys(column))
    try:
        return sorted(seen)
    except TypeError:
        return seen


def _check(measure, gap, hyperparameters: dict, fixed: dict | None) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """Shared validation: arrays of equal length, finite, hyperparameter columns without NaN, each with ≥ 2 values,
    and every combination of their values present (a factorial grid)."""
    measure, gap = _array(measure), _array(gap)
    fixed = dict(fixed or {})
    if not isinstance(hyperparameters, dict) or not hyperparameters:
        raise ValueError("need at least one hyperparameter: a dict name -> one value per net")
    overlap = set(hyperparameters) & set(fixed)
    if overlap:
        raise ValueError(f"{sorted(overlap)} are both scored hyperparameters and fixed columns")
    n = len(measure)
    columns = {**{h: list(v) for h, v in hyperparameters.items()}, **{c: list(v) for c, v in fixed.items()}}
    lengths = {"measure": n, "gap": len(gap), **{name: len(v) for name, v in columns.items()}}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"measure, gap and every column need one entry per net, got lengths {lengths}")
    if n < 2:
        raise ValueError(f"need at least two nets, got {n}")
    for name, values in (("measure", measure), ("gap", gap)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"the {name} holds {int(bad.sum())} NaN or infinite values of {n} (the first at index "
                             f"{int(np.argmax(bad))}): drop those nets (and say so) before scoring")
    for name, values in columns.items():
        missing = [i for i, v in enumerate(values) if _is_missing(v)]
        if missing:
            raise ValueError(f"the column {name!r} holds {len(missing)} NaN values (the first at index {missing[0]})")
    hps = {h: columns[h] for h in hyperparameters}
    levels = {h: _ordered_values(v) for h, v in hps.items()}
    single = [h for h, v in levels.items() if len(v) < 2]
    if single:
        raise ValueError(f"the hyperparameters {single} take a single value: no pair of nets differs in them, so "
                         "they cannot be scored; leave them out")
    present = {tuple(hps[h][i] for h in hps) for i in range(n)}
    for combo in itertools.product(*levels.values()):
        if combo not in present:
            missing = dict(zip(hps, combo))
            total = math.prod(map(len, levels.values()))
            raise ValueError(f"no net has {missing}: the grid is not factorial (of {total} combinations of "
                             f"hyperparameter values, {len(present)} are present)")
    return measure, gap, hps, {c: columns[c] for c in fixed}


@dataclasses.dataclass
class SignError:
    """Dziugaite et al.'s sign-error of a measure over the environments of a grid (:func:`sign_error`).

    ``mean``, ``p90`` and ``worst`` are the mean, 90th percentile (linear interpolation, as ``numpy.percentile``)
    and maximum of the environment errors; ``worst`` is their *robust sign-error*. ``per_environment`` maps each
    environment's description (``"lr 0.001 → 0.003 | width=32, depth=1"``) to its error, NaN where every pair was
    dropped; ``by_hyperparameter`` and ``worst_by_hyperparameter`` are the mean and maximum over the environments
    that vary each hyperparameter. ``environments`` counts the environments scored, ``empty_environments`` those
    left with no pair, ``pairs`` the pairs of nets scored and ``dropped_pairs`` those whose gaps differ by no more
    than ``min_gap_difference``. Statistics over no environment are NaN.
    """

    mean: float
    p90: float
    worst: float
    per_environment: dict
    by_hyperparameter: dict
    worst_by_hyperparameter: dict
    environments: int
    empty_environments: int
    pairs: int
    dropped_pairs: int


def _describe(h: str, a, b, others: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in others.items())
    return f"{h} {a} → {b}" + (f" | {rest}" if rest else "")


def sign_error(measure: Sequence[float], gap: Sequence[float], hyperparameters: dict, fixed: dict | None = None,
               min_gap_difference: float = 0.0) -> SignError:
    """Sign-error of ``measure`` against ``gap`` over single-hyperparameter environments (Dziugaite et al. 2020).

    Dziugaite, Drouin, Neal, Rajkumar, Caballero, Wang, Mitliagkas & Roy, "In search of robust measures of
    generalization", NeurIPS 2020 (arXiv 2010.11924). An *environment* is a pair of hyperparameter settings
    ``(θ, θ')`` that differ in exactly one hyperparameter ``h`` (every pair of its values, with every assignment of
    the others); each hyperparameter with ``k`` values gives ``C(k, 2) · Π_{h'≠h} k_{h'}`` environments. For a pair
    of nets ``(i, j)``, one trained at ``θ`` and one at ``θ'``, the sign-error is

        ``ℓ(i, j) = (1 − sgn(μ_j − μ_i) · sgn(g_j − g_i)) / 2``,

    0 when the measure orders the two nets as their gaps do, 1 when it reverses them and ½ when the measure ties.
    An environment's error is the mean of ``ℓ`` over its pairs; the scores are the mean, 90th percentile and maximum
    over environments (the paper's Figure 1 shows these three; the maximum is their *robust sign-error*, the sup
    over a family of environments of the expected loss), overall and for each hyperparameter.

    Which nets are paired. With ``fixed`` (for example ``{"seed": [...]}``), net ``i`` at ``θ`` is paired with the
    net at ``θ'`` that has the same fixed values — a coupled pair, the same seed on both sides — and every setting
    must hold each combination of fixed values exactly once. With ``fixed=None`` every net at ``θ`` is paired with
    every net at ``θ'``, which is what the authors' released code does with the repeats of each setting.

    Noise. A pair whose gaps differ by no more than ``min_gap_difference`` is dropped (and counted in
    ``dropped_pairs``); a pair with equal gaps has no order to predict and is always dropped. An environment left
    with no pair is excluded from the statistics and counted in ``empty_environments``. This simplifies the
    paper's Monte Carlo filter: their code weights a pair by ``w = max(0, 1 − 2 exp(−n Δg²/2))² − ½`` when that is
    positive (``n = 10⁴`` test points, Hoeffding's inequality for the two test errors), averages the pair errors with
    these weights and drops an environment whose effective sample size ``(Σw)²/Σw²`` is below 12. Their weight is
    positive exactly when ``|Δg| > √(2 ln(2/(1 − 1/√2)) / n) ≈ 1.96/√n``, so ``min_gap_difference = 1.96 / √n_test``
    keeps the pairs they keep, but weighs them equally and applies no effective-sample-size cut (a zoo with a few
    seeds per setting would lose every environment to a cut of 12).

    Raises ``ValueError`` on lengths that differ, a NaN or infinity in the measure or the gap, a hyperparameter
    with a single value, a grid that is not factorial, or (with ``fixed``) a setting whose fixed values are missing
    or repeated, before scoring anything.
    """
    try:
        threshold = float(min_gap_difference)
    except (TypeError, ValueError):
        threshold = math.nan
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"min_gap_difference must be a finite number ≥ 0, got {min_gap_difference!r}")
    measure, gap, hps, fixed_cols = _check(measure, gap, hyperparameters, fixed)
    names = list(hps)
    levels = {h: _ordered_values(v) for h, v in hps.items()}
    n = len(measure)
    setting = [tuple(hps[h][i] for h in names) for i in range(n)]
    members: dict = {}
    for i, s in enumerate(setting):
        members.setdefault(s, []).append(i)
    if fixed_cols:
        coupling: dict = {}
        keys = [tuple(fixed_cols[c][i] for c in fixed_cols) for i in range(n)]
        reference = None
        for s, idx in members.items():
            by_key = {}
            for i in idx:
                if keys[i] in by_key:
                    raise ValueError(f"two nets at {dict(zip(names, s))} share the fixed values "
                                     f"{dict(zip(fixed_cols, keys[i]))}: the coupling is ambiguous")
                by_key[keys[i]] = i
            if reference is None:
                reference = set(by_key)
            elif set(by_key) != reference:
                lost = sorted(map(str, reference ^ set(by_key)))
                raise ValueError(f"the nets at {dict(zip(names, s))} do not have the same fixed values "
                                 f"({list(fixed_cols)}) as the other settings (differing: {lost}): couple a "
                                 "factorial grid, or pass fixed=None to pair every net with every net")
            coupling[s] = by_key

    per_environment: dict = {}
    errors_by_h: dict = {h: [] for h in names}
    pairs = dropped = empty = 0
    for h in names:
        others = [o for o in names if o != h]
        for rest in itertools.product(*(levels[o] for o in others)):
            for a, b in itertools.combinations(levels[h], 2):
                sa = tuple(rest[others.index(x)] if x != h else a for x in names)
                sb = tuple(rest[others.index(x)] if x != h else b for x in names)
                if fixed_cols:
                    left = [coupling[sa][key] for key in coupling[sa]]
                    right = [coupling[sb][key] for key in coupling[sa]]
                else:
                    left, right = zip(*itertools.product(members[sa], members[sb]))
                left, right = np.asarray(left), np.asarray(right)
                dg = gap[right] - gap[left]
                keep = np.abs(dg) > threshold
                dropped += int((~keep).sum())
                pairs += int(keep.sum())
                label = _describe(h, a, b, dict(zip(others, rest)))
                if not keep.any():
                    empty += 1
                    per_environment[label] = math.nan
                    continue
                dm = measure[right[keep]] - measure[left[keep]]
                err = float(np.mean((1 - np.sign(dm) * np.sign(dg[keep])) / 2))
                per_environment[label] = err
                errors_by_h[h].append(err)

    scored = [e for es in errors_by_h.values() for e in es]

    def stat(values, fn):
        return float(fn(values)) if values else math.nan

    return SignError(mean=stat(scored, np.mean), p90=stat(scored, lambda v: np.percentile(v, 90)),
                     worst=stat(scored, np.max), per_environment=per_environment,
                     by_hyperparameter={h: stat(v, np.mean) for h, v in errors_by_h.items()},
                     worst_by_hyperparameter={h: stat(v, np.max) for h, v in errors_by_h.items()},
                     environments=len(scored), empty_environments=empty, pairs=pairs, dropped_pairs=dropped)


@dataclasses.dataclass
class CMIScore:
    """Jiang et al.'s conditional-independence score (:func:`conditional_mutual_information`).

    ``score`` is the minimum over the conditioning sets of the normalized conditional mutual information and
    ``conditioning`` the set that attains it (a tuple of hyperparameter names, ``()`` for none; the smallest and
    first such set on a tie). ``per_subset`` maps every conditioning set to its normalized score (NaN where
    ``H(V_g | U_S) = 0``), ``information`` and ``entropy`` to ``I(V_μ; V_g | U_S)`` and ``H(V_g | U_S)`` in bits,
    and ``pairs`` counts the ordered pairs of nets.
    """

    score: float
    conditioning: tuple
    per_subset: dict
    information: dict
    entropy: dict
    pairs: int


def _entropy_bits(counts: np.ndarray) -> float:
    """Entropy in bits of the distribution with these counts: ``log₂ N − Σ c log₂ c / N``."""
    c = counts[counts > 0].astype(np.float64)
    total = c.sum()
    return float(math.log2(total) - (c * np.log2(c)).sum() / total)


def conditional_mutual_information(measure: Sequence[float], gap: Sequence[float], hyperparameters: dict,
                                   max_conditioning: int = 2) -> CMIScore:
    """Jiang et al.'s normalized conditional mutual information between the orders of a measure and of the gap.

    Jiang, Neyshabur, Mobahi, Krishnan & Bengio, "Fantastic generalization measures and where to find them",
    ICLR 2020 (arXiv 1912.02178), the conditional-independence score that ranked the entries of the NeurIPS 2020 competition *Predicting generalization in
    deep learning* (Jiang et al. 2020, arXiv 2012.07976). Over every ordered pair ``(i, j)`` of distinct nets,

        ``V_μ = sgn(μ_i − μ_j)``,  ``V_g = sgn(g_i − g_j)``,  ``U_S = (θ_i^S, θ_j^S)``,

    ``θ^S`` the values of the hyperparameters in ``S`` for a net, and with the pairs counted as samples of the joint
    distribution (a pair's four-way table cell is ``(U_S, V_g, V_μ)``),

        ``Î(S) = I(V_μ; V_g | U_S) / H(V_g | U_S)``,  ``score = min_{|S| ≤ max_conditioning} Î(S)``.

    ``Î`` lies in [0, 1]: 1 when, within every value of ``U_S``, the order of the measure determines the order of
    the gaps, 0 when the two orders are independent given ``U_S`` — in particular for a measure that depends on the
    hyperparameters in ``S`` alone. Mutual information ignores the direction of the dependence: ``−gap`` scores 1
    like the gap. Conditioning on ``S`` asks whether the measure still tells the gaps apart once the hyperparameters
    in ``S`` are known; the minimum over ``S`` is the score of the most damaging conditioning set. The sets run over
    every subset of the hyperparameters with at most ``max_conditioning`` members, the empty set included
    (``|S| ≤ 2`` in Jiang et al.; larger sets leave few pairs in each cell of ``U_S``).

    Where this follows the competition's scoring code (written by the first author): all ordered pairs, both nets'
    values of every hyperparameter in ``S`` as the condition, the conditional mutual information divided by
    ``H(V_g | U_S)``. Where it departs: that code conditions on ordered pairs of two distinct hyperparameters only
    (``|S| = 2``), averages over the cells of ``U_S`` with equal weights (the same as weighting by ``p(U_S)`` on
    a balanced grid with every ordered pair, a net with itself included), and folds a tie into the negative
    sign; here the cells are weighted by their share of the pairs, a net is not paired with itself, and a tie is a
    third value ``sgn = 0`` (it matters for measures that tie across nets, such as the parameter count).

    Counting is vectorized with numpy: ``n`` nets give ``n(n − 1)`` pairs, about 90,000 for 300 nets, and each
    conditioning set costs one ``bincount``.

    Raises ``ValueError`` on lengths that differ, a NaN or infinity, a constant gap (``H(V_g) = 0``: nothing to
    predict), a hyperparameter with a single value, a grid that is not factorial, or a negative
    ``max_conditioning``, before scoring anything.
    """
    if isinstance(max_conditioning, bool) or not isinstance(max_conditioning, (int, np.integer)) \
            or max_conditioning < 0:
        raise ValueError(f"max_conditioning must be an integer ≥ 0, got {max_conditioning!r}")
    measure, gap, hps, _ = _check(measure, gap, hyperparameters, None)
    if np.all(gap == gap[0]):
        raise ValueError("the gap is the same for every net: there is no order of the gaps to predict")
    n = len(measure)
    left, right = np.nonzero(~np.eye(n, dtype=bool))
    v_g = (np.sign(gap[left] - gap[right]) + 1).astype(np.int64)  # 0, 1, 2 for −, tie, +
    v_m = (np.sign(measure[left] - measure[right]) + 1).astype(np.int64)
    codes = {}
    for h, column in hps.items():
        values = _ordered_values(column)
        index = {v: k for k, v in enumerate(values)}
        per_net = np.fromiter((index[v] for v in column), dtype=np.int64, count=n)
        codes[h] = (per_net[left] * len(values) + per_net[right], len(values) ** 2)

    names = list(hps)
    per_subset, information, entropy = {}, {}, {}
    for size in range(min(max_conditioning, len(names)) + 1):
        for subset in itertools.combinations(names, size):
            cell = np.zeros(len(left), dtype=np.int64)
            for h in subset:
                code, radix = codes[h]
                cell = cell * radix + code
            _, cell = np.unique(cell, return_inverse=True)
            cells = int(cell.max()) + 1
            joint = np.bincount((cell * 3 + v_g) * 3 + v_m, minlength=cells * 9).reshape(cells, 3, 3)
            h_u = _entropy_bits(joint.sum(axis=(1, 2)))
            h_gu = _entropy_bits(joint.sum(axis=2))
            h_mu = _entropy_bits(joint.sum(axis=1))
            h_gmu = _entropy_bits(joint)
            # differences of entropies of ~log2(n²) bits: round-off is ~1e-14, so smaller values are zeros
            cond_h = h_gu - h_u if h_gu - h_u > 1e-12 else 0.0
            mi = h_gu + h_mu - h_gmu - h_u
            mi = mi if mi > 1e-12 else 0.0
            information[subset], entropy[subset] = mi, cond_h
            per_subset[subset] = min(mi / cond_h, 1.0) if cond_h > 0 else math.nan
    finite = [(v, s) for s, v in per_subset.items() if not math.isnan(v)]
    score, best = min(finite, key=lambda t: t[0])  # the first minimum: smallest |S|, then the order of the names
    return CMIScore(score=float(score), conditioning=best, per_subset=per_subset, information=information,
                    entropy=entropy, pairs=len(left))
