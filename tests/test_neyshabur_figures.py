"""The recipes of Neyshabur et al.'s Figs. 1, 3, 4 and 5 (genviz_lib.experiments.neyshabur2017): their quick
settings on a stand-in Fashion-MNIST, the measures against genviz_lib.norms, and the conditions C1–C3 of
Theorem 1 against values computed by hand."""

import math

import pytest
import torch

from genviz_lib import config, data, models, norms
from genviz_lib.experiments import neyshabur2017 as ny

MEASURES = ["margin", "units", "l2", "l1_path", "l2_path", "spectral", "l2_path_h", "spectral_h"]
REAL_FASHION = (data.FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists()


@pytest.fixture(autouse=True)
def _one_thread():
    # These nets are tiny: a step is a few small products, and a second thread only adds synchronization, which
    # costs up to 6x when other processes share the two cores (measured); one thread keeps the file at seconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _entries(cache, name):
    return sorted((cache.root / name).glob("*.pt"))


def _net(*weights) -> models.MLP:
    """A bias-free MLP with the given weight matrices ``[out, in]``, in order."""
    net = models.MLP(weights[0].shape[1], [W.shape[0] for W in weights[:-1]], weights[-1].shape[0], bias=False)
    with torch.no_grad():
        for layer, W in zip(net.linears, weights):
            layer.weight.copy_(torch.as_tensor(W, dtype=torch.float32))
    return net


# --------------------------------------------------------------------------------------------
# The measures of a net
# --------------------------------------------------------------------------------------------


def test_fit_measures_are_the_norms_of_genviz_lib_norms_over_the_squared_margin():
    torch.manual_seed(0)
    net = models.MLP(6, (5, 4), 3, bias=False)
    X = torch.randn(200, 6)
    y = net(X).argmax(1)  # the net's own predictions: margins ≥ 0, and 0 only where every unit is off
    keep = norms.margins(net, X, y) > 0
    X, y = X[keep], y[keep]
    assert len(y) > 20
    m = ny.fit_measures(net, X, y)
    gamma = norms.margin(net, X, y, 5.0)
    assert m["margin"] == pytest.approx(gamma) and gamma > 0
    assert m["l2"] == pytest.approx(norms.frobenius_product(net) ** 2 / gamma ** 2, rel=1e-9)
    assert m["spectral"] == pytest.approx(norms.spectral_product(net) ** 2 / gamma ** 2, rel=1e-9)
    assert m["l1_path"] == pytest.approx(norms.path_norm(net, 1) ** 2 / gamma ** 2, rel=1e-9)
    assert m["l2_path"] == pytest.approx(norms.path_norm(net, 2) ** 2 / gamma ** 2, rel=1e-9)
    assert m["units"] == 5 * 4 * 3  # Π h_i over the layers, the output's too
    assert m["l2_path_h"] == pytest.approx(60 * m["l2_path"]) and m["spectral_h"] == pytest.approx(60 * m["spectral"])


def test_fit_measures_are_nan_when_the_percentile_margin_is_not_positive():
    torch.manual_seed(0)
    net = models.MLP(6, (5,), 3, bias=False)
    X = torch.randn(40, 6)
    m = ny.fit_measures(net, X, net(X).argmin(1))  # every point misclassified
    assert m["margin"] < 0
    assert all(math.isnan(m[k]) for k in ("l2", "l1_path", "l2_path", "spectral", "l2_path_h", "spectral_h"))


# --------------------------------------------------------------------------------------------
# Theorem 1's conditions, against values computed by hand
# --------------------------------------------------------------------------------------------


def test_c1_of_a_layer_that_cancels_its_input_is_zero_and_one_where_nothing_cancels():
    # W1 = I (both units active for x > 0), W2 = [1, −1]: f1 = x, and W2 f1 = x1 − x2 = 0 for x = (1, 1)/√2.
    net = _net(torch.eye(2), torch.tensor([[1.0, -1.0]]))
    triples, mu = ny.condition_mu(net, torch.tensor([[1.0, 1.0]]) / math.sqrt(2))
    assert triples == [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 1, 2)]
    # (0,0,1): √2‖x‖/(‖I‖_F‖x‖) = 1; (0,0,2) and (0,1,2): the output is 0; (1,1,2): √2·√2/(√2·√2) = 1.
    assert mu[:, 0].tolist() == pytest.approx([1.0, 0.0, 0.0, 1.0], abs=1e-12)


def test_c1_of_identity_layers_is_one_and_of_rank_one_layers_is_the_root_of_the_width():
    h = 9
    x = torch.rand(3, h) + 0.1  # positive inputs: every unit of an identity layer is active
    triples, mu = ny.condition_mu(_net(torch.eye(h), torch.eye(h), torch.eye(h)), x)
    assert len(triples) == 1 * 3 + 2 * 2 + 3 * 1  # Σ_{a<b} (b − a) for d = 3
    assert torch.allclose(mu, torch.ones_like(mu), atol=1e-12)
    # W_i = e1 e1ᵀ and x = e1: every product is e1 e1ᵀ (or e1), of norm 1, so μ = √h_c = √h everywhere
    e1 = torch.zeros(h, h)
    e1[0, 0] = 1.0
    _, mu = ny.condition_mu(_net(e1, e1, e1), torch.eye(h)[:1])
    assert torch.allclose(mu, torch.full_like(mu, math.sqrt(h)), atol=1e-12)


def test_c2_counts_the_units_within_delta_rms_of_zero_and_nothing_flips_without_noise():
    net = _net(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.ones(2, 4))
    x = torch.ones(1, 4)  # z1 = (1, 2, 3, 4), rms = √(30/4) ≈ 2.74
    near = ny.near_zero_fraction(net, x, [0.0, 0.5, 1.0, 2.0])
    assert near.shape == (1, 4)  # one hidden layer
    assert near[0].tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0])  # thresholds 0, 1.37, 2.74, 5.48
    torch.manual_seed(0)
    deep = models.MLP(10, (16, 16), 3, bias=False)
    X = torch.randn(20, 10)
    flips = ny.flip_fraction(deep, X, [0.0, 0.1, 1.0], draws=3, generator=torch.Generator().manual_seed(0))
    assert flips.shape == (2, 3)
    assert flips[:, 0].tolist() == [0.0, 0.0]  # δ = 0: the perturbed net is the net
    assert ((flips[:, 1:] > 0) & (flips[:, 1:] <= 1)).all()
    assert (ny.near_zero_fraction(deep, X, [0.0])[:, 0] == 0).all()


def test_c3_of_a_layer_whose_units_all_have_equal_norms_is_exactly_one():
    signs = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])
    net = _net(signs, torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    first, last = ny.unit_norm_ratios(net)
    assert first.tolist() == [1.0, 1.0, 1.0, 1.0]  # every unit's ‖W_{1,j}‖² = 3 = the layer's mean
    assert last.tolist() == pytest.approx([2 * 5 / 6, 2 * 1 / 6])  # h‖w_j‖²/‖W‖_F², mean 1
    # with every hidden unit active, Theorem 1's form h‖W‖²_{2,∞}/‖D W‖_F² is the same largest ratio
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    active = ny.active_unit_norm_ratio(net, torch.tensor([[1.0, -0.1, 2.0]]))
    assert active[0].tolist() == [pytest.approx(4 / 3)]  # units 1, 2 and 3 active (z = 3.1, 1.1, 2.9, −0.9)
    assert active[1].tolist() == [pytest.approx(2 * 5 / 6)]  # D_d = I
    assert len(ny.active_unit_norm_ratio(net, x)[0]) == 2  # one value per input


def test_conditions_refuse_nets_with_biases_or_other_layers():
    with pytest.raises(ValueError, match="bias-free"):
        ny.unit_norm_ratios(models.MLP(3, (4,), 2))
    with pytest.raises(ValueError, match="Linear → ReLU"):
        ny.condition_mu(torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Tanh(),
                                            torch.nn.Linear(4, 2, bias=False)), torch.ones(1, 3))


# --------------------------------------------------------------------------------------------
# The recipes on their quick settings
# --------------------------------------------------------------------------------------------


def test_norms_vs_size_fits_true_and_random_labels_per_size_and_reads_back(tmp_path, fashion_root):
    s = ny.NormsVsSize.for_profile("quick")
    cache = config.ResultsCache(tmp_path / "cache")
    rows = ny.norms_vs_size(s, cache, root=fashion_root, progress=False)
    assert [(r["size"], r["labels"], r["seed"]) for r in rows] == [
        (20, "true", 0), (20, "random", 0), (40, "true", 0), (40, "random", 0)]
    for r in rows:
        assert set(r) == {"size", "labels", "seed", "fitted", "train_error", "test_error", "steps", *MEASURES}
        assert r["fitted"] and r["train_error"] == 0 and r["steps"] < s.steps  # stopped once it fitted
        assert 0 <= r["test_error"] <= 1 and r["units"] == 32 * 32 * 10
        assert r["margin"] > 0 and all(math.isfinite(r[k]) and r[k] > 0 for k in MEASURES)
    assert ny.norms_vs_size(s, cache, root=fashion_root, progress=False) == rows
    assert len(_entries(cache, "neyshabur-fig1-norms")) == 4


def test_confusion_sweep_fits_the_union_and_measures_on_the_true_set(tmp_path, fashion_root):
    s = ny.ConfusionSweep.for_profile("quick")
    cache = config.ResultsCache(tmp_path / "cache")
    rows = ny.confusion_sweep(s, cache, root=fashion_root, progress=False)
    assert [r["confusion"] for r in rows] == [0, 10, 20]
    for r in rows:
        assert set(r) == {"confusion", "seed", "fitted", "train_error", "confusion_error", "test_error", "steps",
                          *MEASURES}
        assert r["fitted"] and r["train_error"] == 0 and r["steps"] < s.steps
        assert r["margin"] > 0 and math.isfinite(r["l2"])
    assert math.isnan(rows[0]["confusion_error"]) and [r["confusion_error"] for r in rows[1:]] == [0, 0]
    # with the confusion set fitted too, training lasts at least as long as for the true set alone
    assert rows[2]["steps"] >= rows[0]["steps"]
    assert len(_entries(cache, "neyshabur-fig3-confusion")) == 3


def test_hidden_units_sweep_keeps_a_net_too_narrow_to_fit(tmp_path, fashion_root):
    s = ny.HiddenUnitsSweep.for_profile("quick").replace(widths=(1, 32))
    rows = ny.hidden_units_sweep(s, config.ResultsCache(tmp_path / "cache"), root=fashion_root, progress=False)
    assert [r["hidden"] for r in rows] == [1, 32]
    narrow, wide = rows
    for r in rows:
        assert set(r) == {"hidden", "seed", "fitted", "train_error", "test_error", "steps", "parameters", *MEASURES}
    assert not narrow["fitted"] and narrow["steps"] == s.steps and narrow["train_error"] > 0  # one unit, 10 classes
    assert wide["fitted"] and wide["parameters"] == 196 * 32 + 32 * 10 and wide["units"] == 320
    assert math.isnan(narrow["l2"]) == (narrow["margin"] <= 0)


def test_hidden_units_sweep_quick_profile_runs(tmp_path, fashion_root):
    rows = ny.hidden_units_sweep(ny.HiddenUnitsSweep.for_profile("quick"), config.ResultsCache(tmp_path),
                                 root=fashion_root, progress=False)
    assert [r["hidden"] for r in rows] == [8, 32] and rows[1]["fitted"]


def test_conditions_measure_the_trained_net_and_its_initialization(tmp_path, fashion_root):
    s = ny.Conditions.for_profile("quick")
    cache = config.ResultsCache(tmp_path / "cache")
    out = ny.conditions(s, cache, root=fashion_root, progress=False)
    assert set(out) == {"c1", "c2", "c3", "summary"}
    d = len(s.widths) + 1
    triples = sum(b - a for a in range(d) for b in range(a + 1, d + 1))
    assert len(out["c1"]) == 2 * triples and len(out["c2"]) == 2 * (d - 1) * len(s.deltas) and len(out["c3"]) == 2 * d
    for r in out["c1"]:
        assert set(r) == {"weights", "a", "c", "b", "case", "mu", "mu_min", "mu_median"}
        assert len(r["mu"]) == s.n_inputs and r["mu_min"] == min(r["mu"]) and r["mu_min"] > 0
        assert r["case"] == ("edge" if r["c"] in (r["a"], r["b"] - 1) else "inner")
    for r in out["c2"]:
        assert set(r) == {"weights", "layer", "delta", "near_zero", "ratio", "flipped"}
        if r["delta"] == 0:
            assert r["near_zero"] == 0 and r["flipped"] == 0 and math.isnan(r["ratio"])
        else:
            assert r["ratio"] == pytest.approx(r["near_zero"] / r["delta"])
    summary = {r["weights"]: r for r in out["summary"]}
    assert list(summary) == ["initial", "trained"]
    assert summary["trained"]["fitted"] and summary["trained"]["steps"] > 0 and summary["initial"]["steps"] == 0
    for r in summary.values():
        assert r["inv_mu_max"] == pytest.approx(1 / r["mu_min"]) and r["mu_min"] <= r["mu_p05"]
        assert r["c3"] >= 1 and r["c2"] > 0  # the largest unit is at least the mean
    # the "initial" net is the perceptron built under the seed: its C3 ratios are those recomputed here
    torch.manual_seed(s.seed)
    init = models.MLP(196, s.widths, 10, bias=False)
    initial = [r for r in out["c3"] if r["weights"] == "initial"]
    for r, ratios in zip(initial, ny.unit_norm_ratios(init)):
        assert r["ratios"] == pytest.approx(ratios.tolist(), rel=1e-12)
        assert r["c3"] == pytest.approx(float(ratios.max().sqrt())) and r["hidden"] == (r["layer"] < d)
    assert repr(ny.conditions(s, cache, root=fashion_root, progress=False)) == repr(out)  # NaN ratios at δ = 0
    assert len(_entries(cache, "neyshabur-fig5-conditions")) == 2


def test_the_recipes_read_the_files_once_and_draw_the_subsets_of_load_fashion_mnist(fashion_root):
    s = ny.ConfusionSweep.for_profile("quick")
    mine = ny._load(s, 20, n_poison=10, root=fashion_root)
    theirs = data.load_fashion_mnist(n_train=20, n_test=s.n_test, n_poison=10, downsample=2, seed=s.seed,
                                     root=fashion_root)
    for a, b in ((mine.train, theirs.train), (mine.test, theirs.test), (mine.poison, theirs.poison)):
        assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, change, message", [
    (ny.NormsVsSize, dict(sizes=(5, 40)), "at least 10 images"),
    (ny.NormsVsSize, dict(sizes=(40, 40)), "distinct"),
    (ny.NormsVsSize, dict(seeds=0), "seeds ≥ 1"),
    (ny.NormsVsSize, dict(percentile=0.0), "percentile"),
    (ny.NormsVsSize, dict(widths=()), "hidden layer"),
    (ny.ConfusionSweep, dict(confusion=(0, -10)), "confusion-set sizes"),
    (ny.ConfusionSweep, dict(size=5), "at least 10"),
    (ny.ConfusionSweep, dict(lr=0.0), "learning rate"),
    (ny.HiddenUnitsSweep, dict(widths=(0, 8)), "positive width"),
    (ny.HiddenUnitsSweep, dict(steps=0), "steps ≥ 1"),
    (ny.Conditions, dict(n_inputs=1000), "n_inputs ≤ size"),
    (ny.Conditions, dict(deltas=(-0.1, 0.1)), "δ ≥ 0"),
    (ny.Conditions, dict(draws=0), "draws ≥ 1"),
])
def test_settings_refuse_impossible_values_before_any_work(cls, change, message):
    with pytest.raises(ValueError, match=message):
        cls.for_profile("quick").replace(**change)


def test_book_profiles_are_the_documented_sweeps():
    assert ny.NormsVsSize.for_profile("book").sizes == (250, 500, 1000, 2000)
    assert ny.ConfusionSweep.for_profile("book").confusion == (0, 100, 200, 400, 800)
    assert ny.HiddenUnitsSweep.for_profile("book").widths == (8, 16, 32, 64, 128, 256, 512, 1024)
    assert ny.Conditions.for_profile("book").widths == (128,) * 5
    assert ny.NormsVsSize.for_profile("full").seeds == 3


# --------------------------------------------------------------------------------------------
# The book's direction, on real Fashion-MNIST
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_FASHION, reason="needs Fashion-MNIST in /usr/share/datasets/fashion-mnist")
def test_random_labels_need_larger_norms_over_margin_than_true_labels(tmp_path):
    s = ny.NormsVsSize(sizes=(500,), steps=1500, widths=(64, 64), n_test=100)
    rows = {r["labels"]: r for r in ny.norms_vs_size(s, config.ResultsCache(tmp_path), progress=False)}
    assert rows["true"]["fitted"] and rows["random"]["fitted"]
    assert rows["random"]["test_error"] > 0.7 > 0.4 > rows["true"]["test_error"]  # chance: 0.9
    for k in ("l2", "l1_path", "l2_path", "spectral"):
        assert rows["random"][k] > 2 * rows["true"][k], k
