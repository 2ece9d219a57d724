import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from genviz_lib import bounds, config, data, losses, models
from genviz_lib.experiments import dziugaite2017

# --------------------------------------------------------------------------------------------
# The binary kl and its inverse
# --------------------------------------------------------------------------------------------


def test_binary_kl_matches_values_computed_by_hand():
    assert bounds.binary_kl(0.1, 0.2) == pytest.approx(0.1 * math.log(0.5) + 0.9 * math.log(0.9 / 0.8), rel=1e-14)
    assert bounds.binary_kl(0.3, 0.3) == 0.0
    assert bounds.binary_kl(0.0, 0.4) == pytest.approx(-math.log(0.6), rel=1e-14)
    assert bounds.binary_kl(1.0, 0.4) == pytest.approx(-math.log(0.4), rel=1e-14)
    assert bounds.binary_kl(0.3, 0.0) == math.inf and bounds.binary_kl(0.3, 1.0) == math.inf
    assert bounds.binary_kl(0.0, 0.0) == 0.0 and bounds.binary_kl(1.0, 1.0) == 0.0
    out = bounds.binary_kl(np.array([0.1, 0.2]), 0.5)
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    with pytest.raises(ValueError, match="lie in"):
        bounds.binary_kl(1.2, 0.5)


@pytest.mark.parametrize("q, c", [(q, c) for q in (0.0, 1e-6, 0.01, 0.1, 0.37, 0.5, 0.9)
                                  for c in (1e-6, 1e-3, 0.05, 0.5)]
                         + [(0.0, 2.0), (0.1, 2.0), (0.5, 2.0), (0.999, 1e-6), (0.999, 1e-4)])
def test_kl_inverse_is_the_root_of_kl_equals_c_above_q(q, c):
    # (where the root lies within ~1e-8 of 1, no double p has kl(q‖p) within 1e-9 of c: those cases are left out)
    p = bounds.kl_inverse(q, c)
    assert q <= p <= 1
    assert bounds.binary_kl(q, p) == pytest.approx(c, abs=1e-9)
    # an independent root finder agrees, and the bisection never lands below the exact root
    if q > 0:
        exact = brentq(lambda x: bounds.binary_kl(q, x) - c, q, 1 - 1e-15, xtol=1e-15, rtol=1e-15)
    else:
        exact = -math.expm1(-c)
    assert p == pytest.approx(exact, abs=1e-10)
    assert bounds.binary_kl(q, p) >= c - 1e-12


def test_kl_inverse_edge_cases():
    for c in (0.0, 0.1, 3.0, 50.0):
        assert bounds.kl_inverse(0.0, c) == pytest.approx(1 - math.exp(-c), abs=1e-15)
    assert bounds.kl_inverse(0.25, 0.0) == 0.25
    assert bounds.kl_inverse(1.0, 0.3) == 1.0
    assert bounds.kl_inverse(0.3, math.inf) == 1.0
    assert 1 - 1e-12 < bounds.kl_inverse(0.5, 1e3) <= 1.0  # a large budget allows any error
    with pytest.raises(ValueError, match="non-negative"):
        bounds.kl_inverse(0.1, -0.1)
    with pytest.raises(ValueError, match="lie in"):
        bounds.kl_inverse(-0.1, 0.1)
    with pytest.raises(ValueError, match="lie in"):
        bounds.kl_inverse(float("nan"), 0.1)


def test_kl_inverse_is_monotone_and_vectorised():
    cs = np.linspace(0, 2, 41)
    p = bounds.kl_inverse(0.1, cs)
    assert p.shape == cs.shape and (np.diff(p) > 0).all()
    qs = np.linspace(0, 1, 41)
    p = bounds.kl_inverse(qs, 0.05)
    assert (np.diff(p) > 0).all() and (p >= qs).all()
    grid = bounds.kl_inverse(qs[:, None], cs[None, 1:])
    assert grid.shape == (41, 40)
    assert grid[7, 3] == bounds.kl_inverse(float(qs[7]), float(cs[4]))
    # never looser than Pinsker's form q + sqrt(c/2)
    assert (grid <= np.minimum(1, qs[:, None] + np.sqrt(cs[None, 1:] / 2)) + 1e-12).all()


def test_sample_convergence_bound_is_the_kl_inverse_at_log_2_over_delta_prime_per_draw():
    assert bounds.sample_convergence_bound(0.1, 1000, 0.01) == bounds.kl_inverse(0.1, math.log(200) / 1000)
    ups = [bounds.sample_convergence_bound(0.1, n, 0.01) for n in (10, 100, 1000, 10000)]
    assert ups == sorted(ups, reverse=True) and ups[-1] > 0.1
    for n, dp in ((0, 0.01), (10, 0.0), (10, 1.0)):
        with pytest.raises(ValueError, match="draws"):
            bounds.sample_convergence_bound(0.1, n, dp)


def test_sample_convergence_bound_covers_the_mean_with_the_promised_probability():
    # n draws of a [0, 1] quantity with mean 0.3: the upper value is below 0.3 in at most δ' of the repetitions
    rng = np.random.default_rng(0)
    n, delta_prime, reps = 50, 0.05, 4000
    means = rng.binomial(n, 0.3, size=reps) / n
    upper = bounds.kl_inverse(means, math.log(2 / delta_prime) / n)
    assert (upper < 0.3).mean() <= delta_prime


# --------------------------------------------------------------------------------------------
# The prior grid, the KL and the bound
# --------------------------------------------------------------------------------------------


def test_prior_grid_and_its_union_bound_term():
    assert bounds.prior_variance(1) == pytest.approx(0.1 * math.exp(-0.01))
    assert bounds.grid_index(bounds.prior_variance(137)) == pytest.approx(137)
    assert bounds.round_to_grid(0.1 * math.exp(-1.234)) == (123, 124)
    assert bounds.round_to_grid(bounds.prior_variance(50) * (1 + 1e-14)) in ((49, 50), (50,))
    assert bounds.round_to_grid(0.1) == (1,)  # never j = 0, whose share of δ would be infinite
    m, delta = 60000, 0.025
    expected = 2 * math.log(42) + math.log(math.pi ** 2 * m / (6 * delta))
    assert bounds.union_log_term(42, m, delta) == pytest.approx(expected)
    # the j-th prior's share δ_j = 6δ/(π² j²): ln(m/δ_j) is the same number
    assert bounds.union_log_term(42, m, delta) == pytest.approx(math.log(m / (6 * delta / (math.pi ** 2 * 42 ** 2))))
    with pytest.raises(ValueError, match="integer ≥ 1"):
        bounds.prior_variance(0)
    with pytest.raises(ValueError, match="≥ 1"):
        bounds.union_log_term(0.5, m, delta)


@pytest.mark.parametrize("m, delta, message", [(1, 0.05, "m ≥ 2"), (0, 0.05, "m ≥ 2"), (100, 0.0, "δ must lie"),
                                               (100, 1.0, "δ must lie"), (100, -0.1, "δ must lie")])
def test_bounds_refuse_bad_m_and_delta(m, delta, message):
    with pytest.raises(ValueError, match=message):
        bounds.pac_bayes_kl_bound(0.1, 100.0, m, delta, 10)
    with pytest.raises(ValueError, match=message):
        bounds.union_log_term(10, m, delta)


def test_the_bound_is_the_kl_inverse_of_its_own_terms():
    q, kl, m, delta, j = 0.08, 1500.0, 60000, 0.025, 130
    log_term = bounds.union_log_term(j, m, delta)
    got = bounds.pac_bayes_kl_bound(q, kl, m, delta, j)
    assert got == bounds.kl_inverse(q, (kl + log_term) / (m - 1))
    assert q < got < bounds.mcallester_bound(q, kl, m, delta, j)
    assert bounds.pac_bayes_kl_bound(q, 2 * kl, m, delta, j) > got  # more KL, looser
    with pytest.raises(ValueError, match="non-negative"):
        bounds.pac_bayes_kl_bound(q, -1.0, m, delta, j)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    w, w0 = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
    log_std = 0.3 * torch.randn(7, generator=g, dtype=torch.float64) - 1
    rho = -0.7
    Q = torch.distributions.Normal(w, log_std.exp())
    P = torch.distributions.Normal(w0, torch.full((7,), math.exp(rho), dtype=torch.float64))
    expected = torch.distributions.kl_divergence(Q, P).sum()
    assert bounds.gaussian_kl(w, log_std, w0, rho).item() == pytest.approx(expected.item(), rel=1e-12)
    lam = math.exp(2 * rho)
    s = (2 * log_std).exp()
    paper = 0.5 * ((s.sum() + (w - w0).pow(2).sum()) / lam - 7 + 7 * math.log(lam) - (2 * log_std).sum())
    assert bounds.gaussian_kl(w, log_std, w0, rho).item() == pytest.approx(paper.item(), rel=1e-12)
    assert bounds.gaussian_kl(w0, torch.full((7,), rho, dtype=torch.float64), w0, rho).item() == 0.0


# --------------------------------------------------------------------------------------------
# The stochastic net
# --------------------------------------------------------------------------------------------


def test_cpu_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with bounds.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with bounds.cpu_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with bounds.cpu_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        with bounds.cpu_threads(0):
            pass


def test_flat_mlp_is_the_net_and_error_rates_are_its_errors():
    torch.manual_seed(0)
    net = models.MLP(5, (7, 3), 4)
    f = bounds.FlatMLP(net)
    w = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    X, y = torch.randn(30, 5), torch.randint(0, 4, (30,))
    assert f.n == w.numel()
    assert torch.allclose(f(w, X), net(X), atol=1e-6)
    W = torch.stack([w, 2 * w, -w])
    assert torch.allclose(f(W, X)[1], f(2 * w, X), atol=1e-6)
    _, acc = losses.evaluate(net, data.Data(X, y))
    assert bounds.error_rates(f, w, data.Data(X, y), chunk=7).item() == pytest.approx(1 - acc.item())
    with pytest.raises(TypeError, match="nn.Linear"):
        bounds.FlatMLP(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)))


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n, 10, generator=g) + 3 * (2 * y[:, None] - 1) / math.sqrt(10)
    return data.Data(X, y)


def test_a_tiny_run_gives_a_consistent_nonvacuous_bound():
    from genviz_lib import train

    train_set, test_set = _blobs(1000, 0), _blobs(200, 1)
    torch.manual_seed(0)
    net = models.MLP(10, (4,), 1)
    init = copy.deepcopy(net)
    train.train(net, train_set, lr=1e-2, steps=60, progress=False)
    r = bounds.optimize_bound(net, init, train_set, test_set, steps=200, lr=3e-2, init_std_scale=1.0,
                              init_log_prior_std=-1.5, mc_samples=30, test_mc_samples=5, progress=False, device="cpu")
    assert r.m == 1000 and r.n_params == 10 * 4 + 4 + 5 and r.steps == 200
    assert 0 <= r.stochastic_train_error <= r.stochastic_train_error_upper < r.bound < 0.5
    upper = bounds.sample_convergence_bound(r.stochastic_train_error, 30, r.delta_prime)
    assert r.stochastic_train_error_upper == upper
    assert r.log_term == bounds.union_log_term(r.prior_index, r.m, r.delta, r.b)
    assert r.bound == bounds.kl_inverse(r.stochastic_train_error_upper, (r.kl + r.log_term) / (r.m - 1))
    assert r.bound <= r.mcallester_bound
    assert r.prior_variance == pytest.approx(r.c * math.exp(-r.prior_index / r.b))
    assert r.prior_index in bounds.round_to_grid(r.prior_variance_optimized, r.c, r.b)
    assert r.confidence == pytest.approx(1 - 0.025 - 0.01)
    assert r.kl > 0 and r.mean_posterior_std > 0 and r.distance_to_init > 0
    assert 0 <= r.stochastic_test_error <= 1 and 0 <= r.train_error <= 1 and 0 <= r.test_error <= 1
    assert len(r.history["step"]) == len(r.history["kl"]) > 10
    assert r.history["objective"][-1] < r.history["objective"][0]  # the optimization lowers its objective
    json.dumps(dataclasses.asdict(r), allow_nan=False)


def test_optimize_bound_refuses_bad_options_before_work():
    net, init = models.MLP(10, (4,), 1), models.MLP(10, (4,), 1)
    d = _blobs(50, 0)
    for kwargs, message in ((dict(delta=0.0), "δ must lie"), (dict(delta=1.5), "δ must lie"),
                            (dict(delta_prime=0.0), "δ'"), (dict(mc_samples=0), "mc_samples"),
                            (dict(init_log_prior_std=0.0), "above|≤ c"), (dict(optimizer="sgd"), "rmsprop")):
        with pytest.raises(ValueError, match=message):
            bounds.optimize_bound(net, init, d, steps=1, progress=False, **kwargs)
    with pytest.raises(ValueError, match="m ≥ 2"):
        bounds.optimize_bound(net, init, data.Data(d.X[:1], d.y[:1]), steps=1, progress=False)
    with pytest.raises(ValueError, match="parameters"):
        bounds.optimize_bound(net, models.MLP(10, (5,), 1), d, steps=1, progress=False)


def test_neyshabur_bound_pays_for_its_alpha_grid():
    torch.manual_seed(0)
    net = models.MLP(10, (8,), 1)
    d = _blobs(200, 0)
    out = bounds.neyshabur_bound(net, d, alphas=(1e-2, 1e-1), samples=4, device="cpu")
    assert [r["alpha"] for r in out["rows"]] == [1e-2, 1e-1]
    for r in out["rows"]:
        assert r["bound"] > r["bound_unpaid"] > out["train_error"]
    assert out["rows"][0]["kl"] / out["rows"][1]["kl"] == pytest.approx(100, rel=1e-6)  # KL ∝ 1/α²
    assert out["best"] == min(out["rows"], key=lambda r: r["bound"])


# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------


def test_recipe_runs_caches_and_writes_its_json(tmp_path, fashion_root):
    s = dziugaite2017.NonvacuousBound.for_profile("quick").replace(n_train=60, n_test=30, pb_steps=50,
                                                                   mc_samples=10, test_mc_samples=2)
    cache = config.ResultsCache(tmp_path / "cache")
    out = dziugaite2017.nonvacuous_bound(s, cache, root=fashion_root, progress=False)
    assert out["m"] == 60 and out["architecture"] == "MLP 196–32–1" and "against" in out["task"]
    assert out["stochastic_train_error"] <= out["stochastic_train_error_upper"] <= out["bound"] <= 1
    assert out["bound"] == bounds.kl_inverse(out["stochastic_train_error_upper"],
                                             (out["kl"] + out["log_term"]) / (out["m"] - 1))
    assert out["neyshabur"]["m"] == 60 and len(out["neyshabur"]["rows"]) == 2
    assert dziugaite2017.nonvacuous_bound(s, cache, root=fashion_root, progress=False) == out
    assert len(list((tmp_path / "cache" / "dziugaite2017-bound").glob("*.pt"))) == 1
    path = dziugaite2017.write_results(out, "quick", tmp_path / "results")
    assert path.name == "bound-quick.json" and [p.name for p in path.parent.iterdir()] == ["bound-quick.json"]
    saved = json.loads(path.read_text())
    for key in ("bound", "stochastic_train_error", "stochastic_test_error", "test_error", "train_error", "kl", "m",
                "delta", "delta_prime", "mc_samples", "prior_variance", "c", "b"):
        assert saved[key] == pytest.approx(out[key])
    assert saved["settings"]["positive_classes"] == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("change, message", [
    (dict(n_train=5), "at least 10"), (dict(delta=0.0), "δ, δ'"), (dict(delta=0.6, delta_prime=0.5), "δ \\+ δ'"),
    (dict(positive_classes=()), "proper subset"), (dict(positive_classes=tuple(range(10))), "proper subset"),
    (dict(mc_samples=0), "mc_samples"), (dict(downsample=3), "downsample"), (dict(init_log_prior_std=-1.0), "grid"),
])
def test_recipe_settings_refuse_impossible_values_before_training(change, message):
    with pytest.raises(ValueError, match=message):
        dziugaite2017.NonvacuousBound.for_profile("quick").replace(**change)


def test_recipe_profiles():
    quick, book, full = (dziugaite2017.NonvacuousBound.for_profile(p) for p in ("quick", "book", "full"))
    assert (book.downsample, book.positive_classes) == (2, (5, 6, 7, 8, 9))
    # the paper's regime: more parameters than training images (196·h + h + h + 1 for one hidden layer of h)
    h = book.widths[0]
    assert len(book.widths) == 1 and 196 * h + 2 * h + 1 > 2 * book.n_train
    assert (book.delta, book.delta_prime, book.c, book.b) == (0.025, 0.01, 0.1, 100.0)  # the paper's
    assert (full.widths, full.downsample, full.sgd_epochs, full.mc_samples) == ((600,), 1, 20, 150_000)
    assert quick.pb_steps < book.pb_steps < full.pb_steps
    assert dziugaite2017.NonvacuousBound.for_profile("quick").replace(positive_classes=None).task.endswith("10 classes")
