"""Chapter 6's zoo, measures and scores: each checked against an independent computation."""

import csv
import math

import pytest
import scipy.stats
import torch

from genviz_lib import data, landscape, models, norms
from genviz_lib.config import ResultsCache
from genviz_lib.experiments import scoreboard as sb


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    cache = ResultsCache(tmp_path_factory.mktemp("cache"))
    zoo = sb.Zoo.for_profile("quick").replace(n_train=100, n_test=100, n_poison=100, max_steps=2000,
                                              batch_sizes=(50,), widths=(16, 24))
    measures = sb.Measures.for_profile("quick")
    return zoo, measures, sb.measure_zoo(zoo, measures, cache, progress=False), cache


def test_settings_are_checked_before_any_work():
    zoo = sb.Zoo.for_profile("quick")
    with pytest.raises(ValueError, match="no repeats"):
        zoo.replace(widths=(16, 16))
    with pytest.raises(ValueError, match="poison factors"):
        zoo.replace(poison_factors=(0.0, 1.0))
    with pytest.raises(ValueError, match="larger than the training set"):
        zoo.replace(batch_sizes=(10_000,))
    with pytest.raises(ValueError, match="flatness_drop"):
        sb.Measures.for_profile("quick").replace(flatness_drop=0.0)


def test_the_zoo_is_the_full_grid_and_reports_who_reached_the_target(quick):
    zoo, _, table, _ = quick
    assert len(table) == len(zoo.widths) * len(zoo.depths) * len(zoo.weight_decays) * len(zoo.batch_sizes) \
        * len(zoo.poison_factors) * len(zoo.seeds)
    assert {(r["width"], r["poison"], r["seed"]) for r in table} == {
        (w, b, s) for w in zoo.widths for b in zoo.poison_factors for s in zoo.seeds}
    for r in table:
        assert r["reached"] == (r["train_loss"] <= zoo.target_loss)
        assert r["gap"] == pytest.approx(r["test_error"] - r["train_error"])
    assert zoo.varied == ("width", "poison")


def test_the_measures_are_the_library_functions_on_the_trained_net(quick, tmp_path):
    zoo, measures, table, cache = quick
    nets = sb.train_zoo(zoo, cache, progress=False)  # read back from the cache
    row, splits = nets[-1], sb.load(zoo)
    net, init = sb.model_of(zoo, row), sb.model_of(zoo, row, "init")
    X, y = splits.train.X, splits.train.y
    values = table[-1]
    gamma = norms.margin(net, X, y, percentile=10)
    assert values["margin"] == pytest.approx(gamma)
    assert values["frobenius"] == pytest.approx(norms.frobenius_product(net) ** 2 / gamma ** 2)
    assert values["l2_path"] == pytest.approx(norms.path_norm(net, 2) ** 2 / gamma ** 2)
    assert values["params"] == sum(p.numel() for p in net.parameters())
    assert values["distance"] == pytest.approx(float((landscape.flatten(net) - landscape.flatten(init)).norm()))
    # the initial net is the one models.MLP draws under the row's seed
    torch.manual_seed(row["seed"])
    fresh = models.MLP(X.shape[1], [row["width"]] * row["depth"], 10, bias=False)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), init.state_dict().values()))
    assert values["normalized_loss"] == pytest.approx(norms.normalized_loss(net, X, y))


def test_flatness_search_finds_the_sigma_where_the_accuracy_drop_crosses_the_target():
    splits = data.load_fashion_mnist(n_train=100, n_test=10, downsample=2)
    fit = data.Data(splits.train.X.flatten(1), splits.train.y)
    torch.manual_seed(0)
    net = models.MLP(196, [16], 10, bias=False)
    from genviz_lib import train

    train.train(net, fit, lr=3e-3, steps=300, progress=False)
    sigma = sb.flatness(net, fit, drop=0.1, samples=8, steps=20, generator=torch.Generator().manual_seed(0))
    g = landscape.metrics(net, {"train": fit})
    w = g.theta
    z = torch.randn(8, w.numel(), generator=torch.Generator().manual_seed(0))
    base = float(g(w[None])["train_acc"][0])
    drop = lambda s: base - float(g(w + s * z)["train_acc"].mean())
    assert drop(sigma * 0.98) <= 0.1 < drop(sigma * 1.02)


def _synthetic(mu_of):
    rows = []
    for w in (1, 2):
        for b in (0.0, 0.5):
            for seed in (0, 1):
                gap = 0.1 * w + 0.3 * b + 0.01 * seed
                rows.append(dict(width=w, depth=1, batch_size=10, weight_decay=0.0, poison=b, seed=seed, reached=True,
                                 gap=gap, m=mu_of(gap, w, b)))
    return rows


def test_scores_of_a_perfect_and_of_a_reversed_measure():
    zoo = sb.Zoo.for_profile("quick").replace(widths=(1, 2), poison_factors=(0.0, 0.5))
    perfect = sb.score(_synthetic(lambda g, w, b: g), zoo, names=["m"])[0]
    assert (perfect["tau"], perfect["granulated_tau"], perfect["sign_error_mean"], perfect["sign_error_worst"],
            perfect["cmi"]) == pytest.approx((1, 1, 0, 0, 1))
    reversed_ = sb.score(_synthetic(lambda g, w, b: -g), zoo, names=["m"])[0]
    assert (reversed_["tau"], reversed_["sign_error_mean"]) == pytest.approx((-1, 1))
    # a measure that knows only the width: right across widths (sign error 0 there), a tie across poison
    width_only = sb.score(_synthetic(lambda g, w, b: w), zoo, names=["m"])[0]
    assert width_only["psi_width"] == pytest.approx(1.0) and math.isnan(width_only["psi_poison"])


def test_the_published_tau_is_scipys_recomputed_from_the_csv(quick, tmp_path):
    zoo, _, table, _ = quick
    taus = sb.score(table, zoo)
    assert taus, "no measure could be scored"
    paths = sb.write_tables(table, taus, "test", results=tmp_path)
    nets = list(csv.DictReader(open(paths[0])))
    published = {r["measure"]: float(r["tau"]) for r in csv.DictReader(open(paths[1]))}
    assert {f"hp_{h}" for h in sb.HYPERPARAMETERS} <= set(nets[0])
    failed = {r["seed"] for r in nets if r["reached"] != "True"}
    kept = [r for r in nets if r["seed"] not in failed]
    for name, tau in published.items():
        expected = scipy.stats.kendalltau([float(r[name]) for r in kept], [float(r["gap"]) for r in kept]).statistic
        assert tau == pytest.approx(expected, abs=1e-12)
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in paths)  # readable by the web server that publishes them
