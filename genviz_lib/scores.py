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
import warnings
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
    than ``min_gap_difference``; ``pair_errors`` maps each scored environment to the errors ``ℓ`` of its pairs.
    Statistics over no environment are NaN.
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
    pair_errors: dict = dataclasses.field(default_factory=dict)


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
    pair_errors: dict = {}
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
                losses = (1 - np.sign(dm) * np.sign(dg[keep])) / 2
                err = float(np.mean(losses))
                per_environment[label] = err
                pair_errors[label] = losses
                errors_by_h[h].append(err)

    scored = [e for es in errors_by_h.values() for e in es]

    def stat(values, fn):
        return float(fn(values)) if values else math.nan

    return SignError(mean=stat(scored, np.mean), p90=stat(scored, lambda v: np.percentile(v, 90)),
                     worst=stat(scored, np.max), per_environment=per_environment,
                     by_hyperparameter={h: stat(v, np.mean) for h, v in errors_by_h.items()},
                     worst_by_hyperparameter={h: stat(v, np.max) for h, v in errors_by_h.items()},
                     environments=len(scored), empty_environments=empty, pairs=pairs, dropped_pairs=dropped,
                     pair_errors=pair_errors)


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


def _check_conditioning(max_conditioning) -> None:
    if isinstance(max_conditioning, bool) or not isinstance(max_conditioning, (int, np.integer)) \
            or max_conditioning < 0:
        raise ValueError(f"max_conditioning must be an integer ≥ 0, got {max_conditioning!r}")


def _pair_cells(hps: dict, n: int, max_conditioning: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every ordered pair of distinct nets (``left``, ``right``) and, for every conditioning set ``S`` with at
    most ``max_conditioning`` hyperparameters, each pair's cell of ``U_S`` (numbered from 0) and the number of
    cells."""
    left, right = np.nonzero(~np.eye(n, dtype=bool))
    codes = {}
    for h, column in hps.items():
        values = _ordered_values(column)
        index = {v: k for k, v in enumerate(values)}
        per_net = np.fromiter((index[v] for v in column), dtype=np.int64, count=n)
        codes[h] = (per_net[left] * len(values) + per_net[right], len(values) ** 2)
    names, cells = list(hps), {}
    for size in range(min(max_conditioning, len(names)) + 1):
        for subset in itertools.combinations(names, size):
            cell = np.zeros(len(left), dtype=np.int64)
            for h in subset:
                code, radix = codes[h]
                cell = cell * radix + code
            _, cell = np.unique(cell, return_inverse=True)
            cells[subset] = (cell, int(cell.max()) + 1)
    return left, right, cells


def _pair_signs(values: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return (np.sign(values[left] - values[right]) + 1).astype(np.int64)  # 0, 1, 2 for −, tie, +


def _normalized_cmi(cell: np.ndarray, cells: int, v_g: np.ndarray, v_m: np.ndarray,
                    weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """``I(V_μ; V_g | U_S)``, ``H(V_g | U_S)`` (bits) and their ratio (NaN where the entropy is 0), from the pairs'
    cells and signs; ``weights`` counts each pair that many times (a bootstrap resample)."""
    joint = np.bincount((cell * 3 + v_g) * 3 + v_m, weights=weights, minlength=cells * 9).reshape(cells, 3, 3)
    h_u = _entropy_bits(joint.sum(axis=(1, 2)))
    h_gu = _entropy_bits(joint.sum(axis=2))
    h_mu = _entropy_bits(joint.sum(axis=1))
    h_gmu = _entropy_bits(joint)
    # differences of entropies of ~log2(n²) bits: round-off is ~1e-14, so smaller values are zeros
    cond_h = h_gu - h_u if h_gu - h_u > 1e-12 else 0.0
    mi = h_gu + h_mu - h_gmu - h_u
    mi = mi if mi > 1e-12 else 0.0
    return mi, cond_h, (min(mi / cond_h, 1.0) if cond_h > 0 else math.nan)


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
    _check_conditioning(max_conditioning)
    measure, gap, hps, _ = _check(measure, gap, hyperparameters, None)
    if np.all(gap == gap[0]):
        raise ValueError("the gap is the same for every net: there is no order of the gaps to predict")
    left, right, cells = _pair_cells(hps, len(measure), max_conditioning)
    v_g, v_m = _pair_signs(gap, left, right), _pair_signs(measure, left, right)
    per_subset, information, entropy = {}, {}, {}
    for subset, (cell, count) in cells.items():
        information[subset], entropy[subset], per_subset[subset] = _normalized_cmi(cell, count, v_g, v_m)
    finite = [(v, s) for s, v in per_subset.items() if not math.isnan(v)]
    score, best = min(finite, key=lambda t: t[0])  # the first minimum: smallest |S|, then the order of the names
    return CMIScore(score=float(score), conditioning=best, per_subset=per_subset, information=information,
                    entropy=entropy, pairs=len(left))


def noise_threshold(n_test: int) -> float:
    """The gap difference below which Dziugaite et al. (2020) treat a pair of nets as unordered: their Monte Carlo
    weight ``max(0, 1 − 2 exp(−n Δg²/2))² − ½`` is positive exactly when ``|Δg| > √(2 ln(2/(1 − 1/√2)) / n)``,
    about ``1.96/√n`` for ``n`` test points (Hoeffding's inequality for two test errors). Pass it to
    :func:`sign_error` as ``min_gap_difference``."""
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or n_test < 1:
        raise ValueError(f"n_test must be a positive number of test points, got {n_test!r}")
    return math.sqrt(2 * math.log(2 / (1 - 1 / math.sqrt(2))) / n_test)


@dataclasses.dataclass
class Intervals:
    """Every score of several measures with a bootstrap interval (:func:`score_intervals`).

    ``rows`` holds one dict per measure, in the order given: ``measure``, then for each score ``s`` of ``tau``,
    ``granulated_tau``, ``psi_<h>`` (each hyperparameter), ``sign_error_mean``, ``sign_error_worst`` and ``cmi``
    its estimate ``s`` and the interval ``s_lo``, ``s_hi``. ``replicates[s]`` is the ``[samples, measures]`` array
    of bootstrap values: the same resamples for every measure, so that :meth:`difference` compares two measures
    on paired resamples. ``method`` says what was resampled for each score."""

    rows: list
    replicates: dict
    measures: list
    level: float
    method: dict

    def difference(self, a: str, b: str, score: str = "tau") -> tuple[float, float, float]:
        """``(estimate, low, high)`` of ``score(a) − score(b)``: the difference and its paired percentile interval."""
        i, j = self.measures.index(a), self.measures.index(b)
        rows = {r["measure"]: r for r in self.rows}
        diff = self.replicates[score][:, i] - self.replicates[score][:, j]
        low, high = _percentiles(diff, self.level)
        return rows[a][score] - rows[b][score], low, high

    def resolved(self, a: str, b: str, score: str = "tau") -> bool:
        """Whether the interval of ``score(a) − score(b)`` excludes 0: the data tell the two measures apart."""
        _, low, high = self.difference(a, b, score)
        return low > 0 or high < 0


def _percentiles(values: np.ndarray, level: float, axis: int = 0):
    alpha = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a score undefined in every resample: NaN
        low, high = np.nanpercentile(values, [alpha, 100 - alpha], axis=axis)
    return low, high


def score_intervals(measures: dict, gap: Sequence[float], hyperparameters: dict, fixed: dict | None = None, *,
                    min_gap_difference: float = 0.0, max_conditioning: int = 2, samples: int = 1000,
                    cmi_samples: int = 200, level: float = 0.95, seed: int = 0) -> Intervals:
    """The four scores of every measure in ``measures`` (name → one value per net) with percentile bootstrap
    intervals at ``level``, each score resampled over the units it averages:

    - Kendall's τ: the nets, drawn with replacement (``samples`` times);
    - ``ψ_h``: the groups of nets that differ in ``h`` alone (:func:`~genviz_lib.norms.granulated_tau`), drawn with
      replacement, each hyperparameter's groups independently; ``Ψ`` is the mean of the resampled ``ψ_h``;
    - the mean sign-error: the environments (:func:`sign_error`, with ``min_gap_difference``), drawn with
      replacement; the worst: the pairs within every environment, drawn with replacement, then the maximum over the
      environments (the worst case of a few pairs is mostly their noise: compare it with the oracle's);
    - the CMI: the nets, drawn with replacement (``cmi_samples`` times), each ordered pair of distinct nets counted
      as often as the product of its nets' draws.

    Every measure sees the same resamples, so :meth:`Intervals.difference` gives paired intervals. The estimates
    are those of :func:`~genviz_lib.norms.kendall_tau`, :func:`~genviz_lib.norms.granulated_tau`,
    :func:`sign_error` and :func:`conditional_mutual_information`. The intervals describe how the scores would
    vary over zoos like this one (other seeds, other nets of the same design); they do not cover the choice of the
    design itself. Input is checked as by those functions, before any resampling.
    """
    from . import norms

    if not isinstance(measures, dict) or not measures:
        raise ValueError("measures must map at least one name to one value per net")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if min(samples, cmi_samples) < 1:
        raise ValueError(f"need at least one resample, got samples={samples}, cmi_samples={cmi_samples}")
    _check_conditioning(max_conditioning)
    names = list(measures)
    checked = {m: _check(v, gap, hyperparameters, fixed)[0] for m, v in measures.items()}
    _, g, hps, fixed_cols = _check(checked[names[0]], gap, hyperparameters, fixed)
    if np.all(g == g[0]):
        raise ValueError("the gap is the same for every net: there is no order of the gaps to predict")
    mu = np.stack([checked[m] for m in names])  # [measures, nets]
    n, k = len(g), len(names)
    rng = np.random.default_rng(seed)
    replicates, method = {}, {}

    # τ over resampled nets: a resample is a count c_i per net, and its τ-b is the ratio of quadratic forms
    # cᵀ(S_μ∘S_g)c / √(cᵀ|S_μ|c · cᵀ|S_g|c) with S_ij = sgn(x_i − x_j) (a net paired with its copy ties in both)
    rows = [{"measure": m, "tau": norms.kendall_tau(mu[i], g)} for i, m in enumerate(names)]
    counts = rng.multinomial(n, np.full(n, 1 / n), size=max(samples, cmi_samples)).astype(np.float64)
    quadratic = lambda matrix: ((counts[:samples] @ matrix) * counts[:samples]).sum(axis=1)
    sign_g = np.sign(g[:, None] - g[None, :])
    untied_g = quadratic(np.abs(sign_g))
    tau = np.full((samples, k), math.nan)
    for i in range(k):
        sign_m = np.sign(mu[i][:, None] - mu[i][None, :])
        untied = untied_g * quadratic(np.abs(sign_m))
        with np.errstate(invalid="ignore", divide="ignore"):
            tau[:, i] = np.where(untied > 0, quadratic(sign_m * sign_g) / np.sqrt(untied), math.nan)
    replicates["tau"], method["tau"] = tau, "nets"

    # ψ_h over resampled groups, Ψ their mean
    granulated = [norms.granulated_tau(mu[i], g, hps, fixed=fixed_cols or None) for i in range(k)]
    psi_reps = []
    for h in hps:
        per_group = np.array([gt.per_group[h] for gt in granulated])  # [measures, groups]
        pick = rng.integers(per_group.shape[1], size=(samples, per_group.shape[1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample of undefined groups only: NaN
            replicates[f"psi_{h}"] = np.nanmean(per_group[:, pick], axis=-1).T  # [samples, measures]
        method[f"psi_{h}"] = f"groups of nets that differ in {h} alone"
        psi_reps.append(replicates[f"psi_{h}"])
        for i, gt in enumerate(granulated):
            rows[i][f"psi_{h}"] = gt.psi[h]
    replicates["granulated_tau"], method["granulated_tau"] = np.mean(psi_reps, axis=0), "the ψ_h resampled"
    for i, gt in enumerate(granulated):
        rows[i]["granulated_tau"] = gt.Psi

    # sign-error: environments for the mean, pairs within environments for the worst
    errors = [sign_error(mu[i], g, hps, fixed=fixed_cols or None, min_gap_difference=min_gap_difference)
              for i in range(k)]
    labels = list(errors[0].pair_errors)
    mean = np.full((samples, k), math.nan)
    worst = np.full((samples, k), math.nan)
    if labels:
        per_env = np.array([[e.per_environment[label] for label in labels] for e in errors])  # [measures, envs]
        pick = rng.integers(len(labels), size=(samples, len(labels)))
        mean = per_env[:, pick].mean(axis=-1).T
        worst = np.full((samples, k), -math.inf)
        for label in labels:
            pairs = np.array([e.pair_errors[label] for e in errors])  # [measures, pairs]
            again = rng.integers(pairs.shape[1], size=(samples, pairs.shape[1]))
            worst = np.maximum(worst, pairs[:, again].mean(axis=-1).T)
    replicates["sign_error_mean"], replicates["sign_error_worst"] = mean, worst
    method["sign_error_mean"], method["sign_error_worst"] = "environments", "pairs within each environment"
    for i, e in enumerate(errors):
        rows[i]["sign_error_mean"], rows[i]["sign_error_worst"] = e.mean, e.worst

    # CMI over resampled nets, a pair weighted by the product of its nets' draws
    left, right, cells = _pair_cells(hps, n, max_conditioning)
    v_g = _pair_signs(g, left, right)
    cmi = np.full((cmi_samples, k), math.nan)
    for i in range(k):
        v_m = _pair_signs(mu[i], left, right)
        rows[i]["cmi"] = min(v for v in (_normalized_cmi(c, nc, v_g, v_m)[2] for c, nc in cells.values())
                             if not math.isnan(v))
        for b, c in enumerate(counts[:cmi_samples]):  # the first resamples of τ's
            weights = c[left] * c[right]
            values = [_normalized_cmi(cell, nc, v_g, v_m, weights)[2] for cell, nc in cells.values()]
            finite = [v for v in values if not math.isnan(v)]
            cmi[b, i] = min(finite) if finite else math.nan
    replicates["cmi"], method["cmi"] = cmi, "nets"

    for score, values in replicates.items():
        low, high = _percentiles(values, level)
        for i in range(k):
            rows[i][f"{score}_lo"], rows[i][f"{score}_hi"] = float(low[i]), float(high[i])
    order = ["measure"] + [x for s in ["tau", "granulated_tau", *(f"psi_{h}" for h in hps), "sign_error_mean",
                                       "sign_error_worst", "cmi"] for x in (s, f"{s}_lo", f"{s}_hi")]
    return Intervals(rows=[{key: r[key] for key in order} for r in rows], replicates=replicates, measures=names,
                     level=level, method=method)
