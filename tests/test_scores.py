import itertools
import math

import numpy as np
import pytest

from genviz_lib import norms, scores

# The tiny grid: hyperparameters A, B ∈ {0, 1}, seeds {0, 1}: 8 nets, indexed (A, B, seed).
GRID = list(itertools.product([0, 1], [0, 1], [0, 1]))
A = [a for a, _, _ in GRID]
B = [b for _, b, _ in GRID]
SEED = [s for _, _, s in GRID]
HPS = {"A": A, "B": B}
# gap = 0.2 A + 0.1 B + 0.01 seed: every gap distinct, raising A always raises the gap by 0.2, B by 0.1.
GAP = [0.2 * a + 0.1 * b + 0.01 * s for a, b, s in GRID]
# A measure that gets some environments right and some wrong (per seed, values at (A, B)):
#   seed 0: (0,0)=2 (1,0)=3 (0,1)=1 (1,1)=4      seed 1: (0,0)=2 (1,0)=3 (0,1)=1 (1,1)=0
MIXED = {(0, 0, 0): 2, (1, 0, 0): 3, (0, 1, 0): 1, (1, 1, 0): 4,
         (0, 0, 1): 2, (1, 0, 1): 3, (0, 1, 1): 1, (1, 1, 1): 0}
MU = [MIXED[k] for k in GRID]


# ---------------------------------------------------------------- sign error

def test_sign_error_is_zero_for_the_gap_and_one_for_minus_the_gap():
    same = scores.sign_error(GAP, GAP, HPS, fixed={"seed": SEED})
    # 4 environments (A 0→1 at B=0, B=1; B 0→1 at A=0, A=1), 2 seed-coupled pairs each, every order agrees
    assert (same.mean, same.worst, same.environments, same.pairs, same.dropped_pairs) == (0.0, 0.0, 4, 8, 0)
    flipped = scores.sign_error([-g for g in GAP], GAP, HPS, fixed={"seed": SEED})
    assert (flipped.mean, flipped.worst) == (1.0, 1.0)
    assert flipped.by_hyperparameter == {"A": 1.0, "B": 1.0}


def test_sign_error_by_hand_on_the_tiny_grid():
    # Coupled pairs (same seed), Δg > 0 in every environment (A adds 0.2, B adds 0.1):
    #   A 0→1 | B=0: seed 0: 2→3 up ✓, seed 1: 2→3 up ✓            error (0 + 0)/2 = 0
    #   A 0→1 | B=1: seed 0: 1→4 up ✓, seed 1: 1→0 down ✗          error (0 + 1)/2 = 0.5
    #   B 0→1 | A=0: seed 0: 2→1 down ✗, seed 1: 2→1 down ✗        error 1
    #   B 0→1 | A=1: seed 0: 3→4 up ✓, seed 1: 3→0 down ✗          error 0.5
    # mean (0 + .5 + 1 + .5)/4 = 0.5; worst 1; by A (0 + .5)/2 = .25, by B (1 + .5)/2 = .75;
    # p90 of sorted [0, .5, .5, 1]: position 0.9·3 = 2.7 → .5 + .7·(1 − .5) = .85
    r = scores.sign_error(MU, GAP, HPS, fixed={"seed": SEED})
    assert r.per_environment == {"A 0 → 1 | B=0": 0.0, "A 0 → 1 | B=1": 0.5,
                                 "B 0 → 1 | A=0": 1.0, "B 0 → 1 | A=1": 0.5}
    assert (r.mean, r.worst) == (0.5, 1.0)
    assert r.p90 == pytest.approx(0.85)
    assert r.by_hyperparameter == {"A": 0.25, "B": 0.75}
    assert r.worst_by_hyperparameter == {"A": 0.5, "B": 1.0}
    assert (r.environments, r.empty_environments, r.pairs, r.dropped_pairs) == (4, 0, 8, 0)


def test_sign_error_couples_by_seed_or_pairs_every_net():
    # One hyperparameter A ∈ {0, 1}, two seeds; the seed shifts the measure by +2 but the gap by only +0.05.
    #   net (A, seed): (0,0) μ=1 g=0   (1,0) μ=2 g=.1   (0,1) μ=3 g=.05   (1,1) μ=4 g=.15
    # coupled by seed: (0,0)→(1,0) Δμ=+1 Δg=+.1 ✓, (0,1)→(1,1) Δμ=+1 Δg=+.1 ✓: error 0
    # every pair (fixed=None) adds (0,0)→(1,1): Δμ=+3 Δg=+.15 ✓ and (0,1)→(1,0): Δμ=−1 Δg=+.05 ✗: error 1/4
    mu, gap, hp, seed = [1, 2, 3, 4], [0.0, 0.1, 0.05, 0.15], {"A": [0, 1, 0, 1]}, [0, 0, 1, 1]
    coupled = scores.sign_error(mu, gap, hp, fixed={"seed": seed})
    assert (coupled.mean, coupled.pairs) == (0.0, 2)
    every = scores.sign_error(mu, gap, hp)
    assert (every.mean, every.pairs) == (0.25, 4)


def test_sign_error_counts_a_tie_in_the_measure_as_one_half():
    # A constant measure never orders the nets: sgn(Δμ) = 0 and every pair costs (1 − 0)/2
    r = scores.sign_error([5.0] * 8, GAP, HPS, fixed={"seed": SEED})
    assert (r.mean, r.worst) == (0.5, 0.5)


def test_min_gap_difference_drops_pairs_and_empties_environments():
    # threshold 0.15: the B environments (Δg = 0.1) lose both pairs; the A environments (Δg = 0.2) keep theirs
    # → mean over the two A environments (0 + 0.5)/2 = 0.25, worst 0.5, B has no environment left
    r = scores.sign_error(MU, GAP, HPS, fixed={"seed": SEED}, min_gap_difference=0.15)
    assert (r.mean, r.worst, r.environments, r.empty_environments, r.pairs, r.dropped_pairs) == (0.25, 0.5, 2, 2, 4, 4)
    assert r.by_hyperparameter["A"] == 0.25 and math.isnan(r.by_hyperparameter["B"])
    assert math.isnan(r.per_environment["B 0 → 1 | A=0"])
    # the cut is |Δg| ≤ threshold (exact binary fractions): Δg = 0.25 is dropped at 0.25, kept at 0.125
    mu, gap, hp, seed = [0.0, 1.0, 0.0, -1.0], [0.0, 0.25, 0.0, 0.5], {"A": [0, 1, 0, 1]}, [0, 0, 1, 1]
    at = scores.sign_error(mu, gap, hp, fixed={"seed": seed}, min_gap_difference=0.25)
    assert (at.pairs, at.dropped_pairs, at.mean) == (1, 1, 1.0)  # only seed 1 (Δg = .5, Δμ = −1) is left: wrong
    below = scores.sign_error(mu, gap, hp, fixed={"seed": seed}, min_gap_difference=0.125)
    assert (below.pairs, below.dropped_pairs, below.mean) == (2, 0, 0.5)
    # equal gaps carry no order and are always dropped; no pair left at all gives NaN statistics
    flat = scores.sign_error([1.0, 2.0], [0.3, 0.3], {"A": [0, 1]})
    assert (flat.environments, flat.empty_environments, flat.dropped_pairs) == (0, 1, 1) and math.isnan(flat.mean)


def test_sign_error_counts_environments_of_a_three_valued_hyperparameter():
    # A ∈ {0, 1, 2}, B ∈ {0, 1}, one net each: A gives C(3,2)·2 = 6 environments, B gives 1·3 = 3
    grid = list(itertools.product([0, 1, 2], [0, 1]))
    gap = [0.1 * a + 0.05 * b for a, b in grid]
    r = scores.sign_error(np.array(gap) * 10, gap, {"A": [a for a, _ in grid], "B": [b for _, b in grid]})
    assert (r.environments, r.mean) == (9, 0.0)
    assert "A 0 → 2 | B=1" in r.per_environment


def test_sign_error_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        scores.sign_error([math.nan] + MU[1:], GAP, HPS)
    with pytest.raises(ValueError, match="NaN or infinite"):
        scores.sign_error(MU, [math.inf] + GAP[1:], HPS)
    with pytest.raises(ValueError, match="one entry per net"):
        scores.sign_error(MU[:-1], GAP, HPS)
    with pytest.raises(ValueError, match="not factorial"):  # drop both seeds of (A, B) = (1, 1)
        keep = [i for i, (a, b, _) in enumerate(GRID) if (a, b) != (1, 1)]
        scores.sign_error([MU[i] for i in keep], [GAP[i] for i in keep],
                          {h: [v[i] for i in keep] for h, v in HPS.items()})
    with pytest.raises(ValueError, match="same fixed values"):  # one seed missing: the coupling is incomplete
        scores.sign_error(MU[:-1], GAP[:-1], {h: v[:-1] for h, v in HPS.items()}, fixed={"seed": SEED[:-1]})
    with pytest.raises(ValueError, match="ambiguous"):
        scores.sign_error(MU, GAP, HPS, fixed={"seed": [0] * 8})
    with pytest.raises(ValueError, match="single value"):
        scores.sign_error(MU, GAP, {**HPS, "C": [1] * 8})
    with pytest.raises(ValueError, match="min_gap_difference"):
        scores.sign_error(MU, GAP, HPS, min_gap_difference=-0.1)


# ---------------------------------------------------------------- conditional mutual information

def test_cmi_is_one_for_the_gap_and_for_minus_the_gap():
    # V_μ = V_g (or −V_g) on every pair: I(V_μ; V_g | U_S) = H(V_g | U_S) for every S
    for mu in (GAP, [-g for g in GAP]):
        c = scores.conditional_mutual_information(mu, GAP, HPS)
        assert c.score == pytest.approx(1.0)
        assert set(c.per_subset) == {(), ("A",), ("B",), ("A", "B")}
        assert all(v == pytest.approx(1.0) for v in c.per_subset.values())
        assert c.pairs == 8 * 7


def test_cmi_of_a_function_of_a_hyperparameter_is_zero_given_it():
    # μ = A on the tiny grid, 56 ordered pairs. Same A (2 levels × 4·3 = 24 pairs): V_μ = 0 and the gap order,
    # set by B and seed, is + on 12 and − on 12. Different A (32 pairs): V_μ = V_g = sgn(A_i − A_j), 16 each.
    # Unconditioned: p(+,+) = p(−,−) = 16/56 = 2/7, p(+,0) = p(−,0) = 12/56 = 3/14; p(V_g) = ½, ½;
    # p(V_μ): 2/7, 2/7, 3/7.  I = 2·(2/7)·log2[(2/7)/(½·2/7)] + 2·(3/14)·log2[(3/14)/(½·3/7)] = 4/7·1 + 0 = 4/7,
    # H(V_g) = 1 bit, so Î(∅) = 4/7. Given A (and given A, B) V_μ is constant in every cell: I = 0.
    c = scores.conditional_mutual_information(A, GAP, HPS)
    assert c.per_subset[()] == pytest.approx(4 / 7)
    assert c.per_subset[("A",)] == 0.0 and c.per_subset[("A", "B")] == 0.0
    assert c.score == 0.0 and c.conditioning == ("A",)
    assert c.per_subset[("B",)] > 0


def test_cmi_by_hand_on_four_nets():
    # nets 1..4: A = 0, 0, 1, 1; gap g = 1, 2, 3, 4; measure μ = 1, 3, 2, 4 (nets 2 and 3 swapped).
    # Unordered pairs i<j all have V_g = −; V_μ = − except (2,3) where μ: 3 > 2 (+). Both orders → 12 pairs:
    #   (V_g, V_μ) = (−,−): 5, (+,+): 5, (−,+): 1, (+,−): 1; marginals ½ each.
    # Î(∅) = I/H(V_g) = [2·(5/12)·log2((5/12)/(1/4)) + 2·(1/12)·log2((1/12)/(1/4))] / 1
    #      = (5/6)·log2(5/3) − (1/6)·log2(3) = 0.6141 − 0.2642 = 0.34998.
    # Given A: cells (0,0) = {(1,2),(2,1)} and (1,1) = {(3,4),(4,3)} each agree perfectly (I = H = 1 bit),
    # cells (0,1), (1,0) (4 pairs each) have V_g constant (I = H = 0); weights 2/12, 2/12, 4/12, 4/12:
    # I(·|A) = H(·|A) = 1/3, Î(A) = 1. The minimum is Î(∅).
    c = scores.conditional_mutual_information([1, 3, 2, 4], [1, 2, 3, 4], {"A": [0, 0, 1, 1]})
    expected = 5 / 6 * math.log2(5 / 3) - 1 / 6 * math.log2(3)
    assert c.score == pytest.approx(expected) and c.conditioning == ()
    assert c.information[("A",)] == pytest.approx(1 / 3) and c.entropy[("A",)] == pytest.approx(1 / 3)
    assert c.per_subset[("A",)] == pytest.approx(1.0)
    # max_conditioning = 0 is the unconditioned mutual information alone
    assert scores.conditional_mutual_information([1, 3, 2, 4], [1, 2, 3, 4], {"A": [0, 0, 1, 1]},
                                                 max_conditioning=0).per_subset == {(): pytest.approx(expected)}


def test_cmi_counts_a_tie_in_the_measure_as_its_own_value():
    # Same four nets, μ = A = 0, 0, 1, 1. Ties (1,2),(2,1),(3,4),(4,3): V_μ = 0 with V_g = −, +, −, +;
    # the 8 cross pairs have V_μ = V_g. p(−,−) = p(+,+) = 4/12, p(−,0) = p(+,0) = 2/12;
    # I = 2·(1/3)·log2[(1/3)/(½·1/3)] + 2·(1/6)·log2[(1/6)/(½·1/3)] = 2/3 + 0; H(V_g) = 1 → Î(∅) = 2/3
    c = scores.conditional_mutual_information([0, 0, 1, 1], [1, 2, 3, 4], {"A": [0, 0, 1, 1]})
    assert c.per_subset[()] == pytest.approx(2 / 3)
    assert (c.score, c.conditioning) == (0.0, ("A",))


def test_cmi_is_fast_on_a_zoo_of_three_hundred_nets():
    # 3·2·2·2·3 settings × 4 seeds = 288 nets, 82,656 ordered pairs, 16 conditioning sets
    grid = list(itertools.product([0, 1, 2], [0, 1], [0, 1], [0, 1], [0, 1, 2], range(4)))
    hps = {name: [row[k] for row in grid] for k, name in enumerate("abcde")}
    rng = np.random.default_rng(0)
    gap = rng.normal(size=len(grid))
    c = scores.conditional_mutual_information(gap, gap, hps)
    assert c.pairs == 288 * 287 and len(c.per_subset) == 16 and c.score == pytest.approx(1.0)
    noise = scores.conditional_mutual_information(gap + rng.normal(size=len(grid)), gap, hps)
    assert 0 < noise.score < 1


def test_cmi_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        scores.conditional_mutual_information(MU, [math.nan] + GAP[1:], HPS)
    with pytest.raises(ValueError, match="one entry per net"):
        scores.conditional_mutual_information(MU, GAP, {"A": A[:-1], "B": B})
    with pytest.raises(ValueError, match="not factorial"):
        scores.conditional_mutual_information([1, 2, 3], [1, 2, 3], {"A": [0, 0, 1], "B": [0, 1, 0]})
    with pytest.raises(ValueError, match="same for every net"):
        scores.conditional_mutual_information(MU, [0.1] * 8, HPS)
    with pytest.raises(ValueError, match="max_conditioning"):
        scores.conditional_mutual_information(MU, GAP, HPS, max_conditioning=-1)


# ---------------------------------------------------------------- intervals

def _zoo(rng, per_level=(3, 2, 2), seeds=3, noise=0.01, effects=(0.02, 0.01, 0.1)):
    """A factorial zoo whose gap rises with each hyperparameter by its effect per level, plus noise."""
    grid = list(itertools.product(*(range(k) for k in per_level), range(seeds)))
    columns = np.array(grid).T
    gap = sum(e * columns[i] for i, e in enumerate(effects)) + rng.normal(0, noise, len(grid))
    hps = {name: columns[i].tolist() for i, name in enumerate(("w", "d", "p"))}
    return gap, hps, {"seed": columns[3].tolist()}


def test_noise_threshold_is_dziugaite_et_al_s_weight_boundary():
    t = scores.noise_threshold(10_000)
    assert t == pytest.approx(1.96 / 100, rel=1e-3)
    weight = lambda dg, n: max(0.0, 1 - 2 * math.exp(-n * dg ** 2 / 2)) ** 2 - 0.5  # their Monte Carlo weight
    assert weight(t * 1.001, 10_000) > 0 > weight(t * 0.999, 10_000)
    with pytest.raises(ValueError, match="positive number of test points"):
        scores.noise_threshold(0)


def test_intervals_hold_the_point_scores_and_pair_the_resamples():
    rng = np.random.default_rng(0)
    gap, hps, fixed = _zoo(rng)
    noisy = gap + rng.normal(0, 0.03, len(gap))
    r = scores.score_intervals({"gap": gap, "noisy": noisy, "minus": -gap}, gap, hps, fixed, samples=300,
                               cmi_samples=50)
    rows = {row["measure"]: row for row in r.rows}
    point = rows["noisy"]
    assert point["tau"] == norms.kendall_tau(noisy, gap)
    assert point["granulated_tau"] == norms.granulated_tau(noisy, gap, hps, fixed=fixed).Psi
    assert point["sign_error_mean"] == scores.sign_error(noisy, gap, hps, fixed=fixed).mean
    assert point["cmi"] == scores.conditional_mutual_information(noisy, gap, hps).score
    for score in ("tau", "granulated_tau", "psi_w", "sign_error_mean", "cmi"):
        assert point[f"{score}_lo"] <= point[score] <= point[f"{score}_hi"], score
        assert point[f"{score}_lo"] < point[f"{score}_hi"], f"{score}: a noisy measure's interval has width"
    assert np.allclose([rows["gap"]["tau_lo"], rows["gap"]["tau_hi"], rows["minus"]["tau_hi"]], [1, 1, -1])
    # paired: the gap beats the noisy measure on τ, and a measure never differs from itself
    estimate, low, high = r.difference("gap", "noisy")
    assert estimate == 1 - point["tau"] and 0 < low <= estimate <= high
    assert r.resolved("gap", "noisy") and not r.resolved("noisy", "noisy")
    assert r.difference("noisy", "noisy") == (0.0, 0.0, 0.0)


def test_tau_intervals_cover_the_population_tau():
    """Zoos drawn from one population, where a measure is the gap plus Gaussian noise: the population τ is
    (2/π)·arcsin(ρ) for the correlation ρ of the two (Greiner's relation for a bivariate normal). The 90%
    intervals must cover it in about 90% of 120 zoos (a binomial 99.9% band: 79–98%)."""
    rng = np.random.default_rng(1)
    covered, zoos = 0, 120
    for _ in range(zoos):
        n = 96
        gap = rng.normal(size=n)
        measure = gap + rng.normal(size=n)  # ρ = 1/√2
        hps = {"h": [i % 2 for i in range(n)]}
        fixed = {"seed": [i // 2 for i in range(n)]}
        row = scores.score_intervals({"m": measure}, gap, hps, fixed, samples=400, cmi_samples=1,
                                     level=0.9, seed=int(rng.integers(1 << 30))).rows[0]
        covered += row["tau_lo"] <= 2 / math.pi * math.asin(1 / math.sqrt(2)) <= row["tau_hi"]
    assert 0.79 * zoos <= covered <= 0.98 * zoos, f"covered in {covered} of {zoos} zoos"


def test_the_noise_filter_moves_the_oracle_s_worst_sign_error():
    """A measure that sees the gap through noise (an oracle): where a hyperparameter does not move the gap, pairs
    closer than that noise make its worst environment a coin flip or worse; filtered at three times the noise,
    those pairs are dropped and the worst case falls."""
    rng = np.random.default_rng(2)
    gap, hps, fixed = _zoo(rng, noise=0.02, effects=(0.0, 0.0, 0.1))
    oracle = gap + rng.normal(0, 0.01, len(gap))
    raw = scores.sign_error(oracle, gap, hps, fixed=fixed)
    filtered = scores.sign_error(oracle, gap, hps, fixed=fixed, min_gap_difference=0.03 * math.sqrt(2))
    assert raw.worst >= 2 / 3 and filtered.worst < raw.worst and filtered.dropped_pairs > 0


def test_intervals_reject_bad_input_before_resampling():
    rng = np.random.default_rng(3)
    gap, hps, fixed = _zoo(rng)
    for kwargs, message in [({"level": 1.0}, "level"), ({"samples": 0}, "at least one resample"),
                            ({"max_conditioning": -1}, "max_conditioning")]:
        with pytest.raises(ValueError, match=message):
            scores.score_intervals({"m": gap}, gap, hps, fixed, **kwargs)
    with pytest.raises(ValueError, match="one entry per net"):
        scores.score_intervals({"m": gap[:-1]}, gap, hps, fixed)
    with pytest.raises(ValueError, match="at least one name"):
        scores.score_intervals({}, gap, hps, fixed)
