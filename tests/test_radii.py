"""Basin radii against known answers: quadratics and other losses with radii in closed form, a loss that is
not monotone along the ray, several cutoffs, a given start, directions at the cap, and a small net against a
plain bisection."""

import math

import pytest
import torch

from genviz_lib import data, landscape, models, volume

N = 6


def _matrix(eigenvalues):
    Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(0)))
    return Q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ Q.T


A = _matrix([0.5, 1, 2, 4, 8, 16])


def half_norm(T, A=A):
    """½ θᵀAθ for each row."""
    return 0.5 * torch.einsum("...i,ij,...j->...", T, A, T)


def directions(m, n=N, seed=0):
    return landscape.random_directions(n, m, torch.Generator().manual_seed(seed), dtype=torch.float64)


def curvature_along(phi, A=A):
    return torch.einsum("mi,ij,mj->m", phi, A, phi) / (phi * phi).sum(1)


def counting(f):
    """``f`` that also counts the parameter vectors it is called with (``g.rows``) and keeps each call's
    distances from the origin (``g.calls``)."""
    def g(T):
        g.rows += len(T)
        g.calls.append(T.norm(dim=1))
        return f(T)
    g.rows, g.calls = 0, []
    return g


def assert_within(radii, exact, rtol):
    """Each radius is the upper end of a bracket of relative width ``rtol`` around the exact crossing: at or
    above it (to rounding), by at most ``rtol`` of itself."""
    assert (radii >= exact * (1 - 1e-12)).all()
    assert (radii - exact <= rtol * radii).all()


def assert_crossing(f, phi, radii, cutoff, rtol, theta=0.0):
    """The loss is at or above the cutoff at each radius from ``theta`` and below it ``rtol`` (relative) inside."""
    units = phi / phi.norm(dim=1, keepdim=True)
    assert (f(theta + radii[:, None] * units) >= cutoff).all()
    assert (f(theta + (1 - rtol) * radii[:, None] * units) < cutoff).all()


# ------------------------------------------------------------------ losses with known radii


@pytest.mark.parametrize("rtol", [1e-3, 1e-6])
def test_quadratic_radii_exact_with_few_evaluations(rtol):
    phi, c = directions(1000), 0.3
    f = counting(half_norm)
    result = volume.basin_radius(f, torch.zeros(N, dtype=torch.float64), phi, c, rtol=rtol)
    exact = torch.sqrt(2 * c / curvature_along(phi))
    assert_within(result.radii, exact, rtol)
    assert result.n_at_cap == 0
    assert result.evaluations == f.rows - 1  # every call but the check of f(θ) itself
    # bracketing every direction from r_max·2⁻³⁰ and bisecting took 35 (rtol 1e-3) and 45 (1e-6) a direction
    assert result.evaluations / len(phi) <= 5.5


@pytest.mark.parametrize("name", ["q + q²", "exp(q) − 1", "√q"])
def test_losses_that_are_no_power_of_the_distance(name):
    # the radii solve q = ½φᵀAφ·t² = q*(c): the interpolation is not exact on these
    c, rtol = 0.3, 1e-6
    f, q_star = {"q + q²": (lambda T: half_norm(T) + half_norm(T) ** 2, (math.sqrt(1 + 4 * c) - 1) / 2),
                 "exp(q) − 1": (lambda T: torch.expm1(half_norm(T)), math.log1p(c)),
                 "√q": (lambda T: half_norm(T).sqrt(), c ** 2)}[name]
    phi = directions(1000, seed=1)
    result = volume.basin_radius(f, torch.zeros(N, dtype=torch.float64), phi, c, rtol=rtol)
    exact = torch.sqrt(2 * q_star / curvature_along(phi))
    assert_within(result.radii, exact, rtol)
    assert result.evaluations / len(phi) <= 7


def test_several_cutoffs_each_start_at_their_own_pilot_median():
    cutoffs, rtol = [0.01, 0.1, 1.0], 1e-6
    phi = directions(300, seed=2)
    f = counting(half_norm)
    result = volume.basin_radius(f, torch.zeros(N, dtype=torch.float64), phi, cutoffs, rtol=rtol)
    assert result.radii.shape == (3, 300)
    exact = torch.sqrt(2 * torch.tensor(cutoffs, dtype=torch.float64)[:, None] / curvature_along(phi)[None])
    assert_within(result.radii, exact, rtol)
    # after the pilot, every direction's first probe for each cutoff is at that cutoff's pilot median radius
    rest = len(phi) - volume.PILOT
    first = next(d for d in f.calls if len(d) == 3 * rest).reshape(rest, 3)  # by direction, then distance
    medians = exact[:, :volume.PILOT].quantile(0.5, dim=1)
    assert torch.allclose(first, medians.expand(rest, 3), rtol=rtol)
    assert result.evaluations / (3 * len(phi)) <= 6


@pytest.mark.parametrize("r_min", [0.02, 5.0])
def test_a_given_r_min_is_where_every_direction_starts(r_min):
    phi, c = directions(200, seed=3), 0.3
    f = counting(half_norm)
    result = volume.basin_radius(f, torch.zeros(N, dtype=torch.float64), phi, c, rtol=1e-6, r_min=r_min)
    assert torch.allclose(f.calls[1], torch.full((200,), r_min, dtype=torch.float64))  # calls[0] is f(θ)
    exact = torch.sqrt(2 * c / curvature_along(phi))
    assert_within(result.radii, exact, 1e-6)
    # the radii lie in [0.21, 0.99]: a few doublings from 0.02 (or halvings from 5.0) until the line fits
    assert result.evaluations / len(phi) <= 9


def test_directions_at_the_cap_in_the_pilot_and_after_it():
    A2 = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))  # flat along the second axis
    phi = directions(40, n=2, seed=4)
    phi[3] = phi[30] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    r_max, c = 20.0, 0.5
    result = volume.basin_radius(lambda T: half_norm(T, A2), torch.zeros(2, dtype=torch.float64), phi, c,
                                 rtol=1e-6, r_max=r_max)
    exact = 1 / (phi[:, 0].abs() / phi.norm(dim=1))  # ½(t·φ₁)² = ½
    expected_cap = exact > r_max
    assert expected_cap[3] and expected_cap[30] and expected_cap.sum() < 40
    assert torch.equal(result.at_cap, expected_cap)
    assert (result.radii[expected_cap] == r_max).all()
    inside = ~expected_cap
    assert_within(result.radii[inside], exact[inside], 1e-6)


def test_a_non_finite_loss_names_its_direction_after_the_pilot():
    phi = torch.zeros(40, 2, dtype=torch.float64)
    phi[:, 0] = 1.0
    phi[30] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    f = lambda T: torch.where(T[:, 1] > 0.5, torch.nan, half_norm(T, torch.eye(2, dtype=torch.float64)))
    with pytest.raises(ValueError, match="along direction 30 "):
        volume.basin_radius(f, torch.zeros(2, dtype=torch.float64), phi, cutoff=10.0)


def test_float32_and_a_tolerance_below_its_precision_still_ends():
    phi = directions(50).float()
    f = lambda T: half_norm(T.double(), A).float()
    result = volume.basin_radius(f, torch.zeros(N), phi, 0.3, rtol=1e-10)
    exact = torch.sqrt(2 * 0.3 / curvature_along(phi.double()))
    assert ((result.radii - exact).abs() <= 1e-6 * exact).all()


# ------------------------------------------------------------------ a loss that is not monotone along the ray


def wavy(x):
    """Reaches 1 first at x = 1; above 1 after that except in a dip below 1 on (2.94, 3.08)."""
    return x ** 2 * (1 + 0.5 * torch.sin(5 * (x - 1))) * (1 - 0.95 * torch.exp(-((x - 3) / 0.2) ** 2))


def _dip_end():
    lo, hi = 3.0, 3.5  # wavy(3) < 1 ≤ wavy(3.5)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if wavy(torch.tensor(mid, dtype=torch.float64)) < 1 else (lo, mid)
    return hi


def test_a_wavy_loss_gives_the_first_crossing_from_a_pilot_start_above_or_below():
    # the loss along φ is wavy(t·√(φᵀAφ)/0.7): it first reaches the cutoff 1 at t = 0.7/√(φᵀAφ), a 4-fold
    # range, so the pilot's median radius starts 73 % of the directions above the cutoff (at most 1.7 times
    # their radius: over the bumps, short of the dip) and the others below it
    A4 = _matrix([0.25, 0.5, 1, 2, 3, 4])
    f = lambda T: wavy(torch.sqrt(2 * half_norm(T, A4)) / 0.7)
    phi, rtol = directions(300, seed=5), 1e-6
    result = volume.basin_radius(f, torch.zeros(N, dtype=torch.float64), phi, 1.0, rtol=rtol)
    x = 0.7 / curvature_along(phi, A4).sqrt()
    assert_within(result.radii, x, rtol)
    assert_crossing(f, phi, result.radii, 1.0, rtol)


@pytest.mark.parametrize("r_min, expected", [(5.0, 1.0), (0.01, 1.0), (3.0, "dip")])
def test_a_wavy_loss_from_a_given_start(r_min, expected):
    # the same loss in every direction, wavy(t): from 5 the bracketing shrinks past the bumps and the dip
    # to the first crossing, from 0.01 it grows to it; from 3, inside the dip below the cutoff, it grows to
    # the dip's end: a crossing, not the first one
    f = lambda T: wavy(T.norm(dim=1))
    phi, rtol = directions(50, seed=6), 1e-6
    result = volume.basin_radius(f, torch.zeros(N, dtype=torch.float64), phi, 1.0, rtol=rtol, r_min=r_min)
    x = _dip_end() if expected == "dip" else 1.0
    assert_within(result.radii, x, rtol)
    assert_crossing(f, phi, result.radii, 1.0, rtol)


# ------------------------------------------------------------------ a net against a plain bisection


def _bisection(f, theta, units, cutoff, rtol):
    """Double (or halve) every direction from t = 1 until it brackets the cutoff, then bisect."""
    at = lambda t: f(theta[None] + t[:, None] * units)
    m = len(units)
    lo, hi = torch.zeros(m, dtype=torch.float64), torch.full((m,), math.inf, dtype=torch.float64)
    t = torch.ones(m, dtype=torch.float64)
    above = at(t) >= cutoff
    hi[above], lo[~above] = t[above], t[~above]
    while True:  # halve the directions above the cutoff at t = 1 until below
        todo = lo == 0
        if not todo.any():
            break
        t = hi / 2
        up = at(t) >= cutoff
        hi = torch.where(todo & up, t, hi)
        lo = torch.where(todo & ~up, t, lo)
    while True:  # double the others until above
        todo = torch.isinf(hi)
        if not todo.any():
            break
        t = torch.where(todo, 2 * lo, lo)
        up = at(t) >= cutoff
        hi = torch.where(todo & up, t, hi)
        lo = torch.where(todo & ~up, t, lo)
    while (hi - lo > rtol * hi).any():
        mid = 0.5 * (lo + hi)
        up = at(mid) >= cutoff
        hi, lo = torch.where(up, mid, hi), torch.where(up, lo, mid)
    return hi


@pytest.fixture(scope="module")
def swiss_roll_objective():
    roll = data.swiss_roll(n_train=200, n_test=10, seed=0)
    torch.manual_seed(0)
    net = models.swiss_roll_net().double()
    f = landscape.objective(net, roll.train.X.double(), roll.train.y)
    return f, landscape.flatten(net)


def test_a_swiss_roll_net_agrees_with_plain_bisection(swiss_roll_objective):
    # at initialization (loss 0.80) the loss rises along these rays through 1.5 and 5 once; just above
    # 1 it does not (a bump above 1 and a dip below it along some rays: the two would find different
    # crossings, bisecting from the doubling's bracket [8, 16] the later one)
    f, theta = swiss_roll_objective
    rtol, m, cutoffs = 1e-4, 100, [1.5, 5.0]
    phi = landscape.random_directions(theta.numel(), m, torch.Generator().manual_seed(0), dtype=torch.float64)
    result = volume.basin_radius(f, theta, phi, cutoffs, rtol=rtol)
    for radii, cutoff in zip(result.radii, cutoffs):
        reference = _bisection(f, theta, phi, cutoff, rtol)
        # both report the upper end of a bracket of relative width rtol around the same crossing
        assert ((radii - reference).abs() <= rtol * torch.maximum(radii, reference)).all()
        assert_crossing(f, phi, radii, cutoff, rtol, theta)
    assert result.n_at_cap.sum() == 0
    # 7.5 a direction and cutoff, the pilot's 16 directions about 25 each; the bisection takes 20
    assert result.evaluations / (m * len(cutoffs)) <= 9
