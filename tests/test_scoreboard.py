"""Chapter 6's zoo, measures and scores: each checked against an independent computation."""

import csv
import math

import pytest
import scipy.stats
import torch

from genviz_lib import data, landscape, models, norms
from genviz_lib.config import ResultsCache
from genviz_lib.experiments import scoreboard as sb
from genviz_lib.experiments import scoring


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    cache = ResultsCache(tmp_path_factory.mktemp("cache"))
    zoo = sb.Zoo.for_profile("quick").replace(train_sizes=(100,), n_test=100, n_poison=100, max_steps=2000,
                                              batch_sizes=(50,), widths=(16, 24))
    measures = sb.Measures.for_profile("quick")
    return zoo, measures, sb.measure_zoo(zoo, measures, cache, progress=False), cache


def test_settings_are_checked_before_any_work():
    zoo = sb.Zoo.for_profile("quick")
    with pytest.raises(ValueError, match="no repeats"):
        zoo.replace(widths=(16, 16))
    with pytest.raises(ValueError, match="poison factors"):
        zoo.replace(poison_factors=(0.0, 1.0))
    with pytest.raises(ValueError, match="larger than the smallest training set"):
        zoo.replace(batch_sizes=(10_000,))
    with pytest.raises(ValueError, match="flatness_drop"):
        sb.Measures.for_profile("quick").replace(flatness_drop=0.0)


def test_the_zoo_is_the_full_grid_and_reports_who_reached_the_target(quick):
    zoo, _, table, _ = quick
    assert len(table) == math.prod(len(zoo.values(h)) for h in sb.HYPERPARAMETERS) * len(zoo.seeds)
    assert {(r["width"], r["poison"], r["seed"]) for r in table} == {
        (w, b, s) for w in zoo.widths for b in zoo.poison_factors for s in zoo.seeds}
    for r in table:
        assert r["reached"] == (r["train_loss"] <= zoo.target_loss)
        assert r["gap"] == pytest.approx(r["test_error"] - r["train_error"])
    assert zoo.varied == ("width", "poison")


def test_the_measures_are_the_library_functions_on_the_trained_net(quick, tmp_path):
    zoo, measures, table, cache = quick
    nets = sb.train_zoo(zoo, cache, progress=False)  # read back from the cache
    row = nets[-1]
    splits = sb.load(zoo, row["train_size"])
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
    # the volume radius: the radius of the ball in n dimensions whose volume is the basin's
    n, log10_volume = values["params"], -values["neg_log_volume"]
    ball = math.pi ** (n / 2) / math.gamma(n / 2 + 1) if n < 300 else None
    log10_ball = math.log10(ball) if ball else (n / 2 * math.log(math.pi) - math.lgamma(n / 2 + 1)) / math.log(10)
    assert -values["neg_log_volume_radius"] == pytest.approx((log10_volume - log10_ball) / n, rel=1e-9)


def test_the_volume_radius_orders_the_nets_of_one_architecture_as_the_volume_does(quick):
    _, _, table, _ = quick
    for params in {r["params"] for r in table}:
        same = [r for r in table if r["params"] == params]
        assert len(same) >= 4
        volume, radius = [r["neg_log_volume"] for r in same], [r["neg_log_volume_radius"] for r in same]
        assert scipy.stats.kendalltau(volume, radius).statistic == pytest.approx(1.0)
    # across architectures the volume mostly counts parameters: −log V grows with n, the radius does not
    small, large = (min(table, key=lambda r: r["params"]), max(table, key=lambda r: r["params"]))
    assert large["neg_log_volume"] - small["neg_log_volume"] > 100 * abs(
        large["neg_log_volume_radius"] - small["neg_log_volume_radius"])


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
                rows.append(dict(width=w, depth=1, batch_size=10, weight_decay=0.0, poison=b, train_size=100, seed=seed,
                                 reached=True,
                                 gap=gap, m=mu_of(gap, w, b)))
    return rows


def test_scores_of_a_perfect_and_of_a_reversed_measure():
    zoo = sb.Zoo.for_profile("quick").replace(widths=(1, 2), poison_factors=(0.0, 0.5))
    perfect = scoring.score(_synthetic(lambda g, w, b: g), zoo, names=["m"])[0]
    assert (perfect["tau"], perfect["granulated_tau"], perfect["sign_error_mean"], perfect["sign_error_worst"],
            perfect["cmi"]) == pytest.approx((1, 1, 0, 0, 1))
    reversed_ = scoring.score(_synthetic(lambda g, w, b: -g), zoo, names=["m"])[0]
    assert (reversed_["tau"], reversed_["sign_error_mean"]) == pytest.approx((-1, 1))
    # a measure that knows only the width: right across widths (sign error 0 there), a tie across poison
    width_only = scoring.score(_synthetic(lambda g, w, b: w), zoo, names=["m"])[0]
    assert width_only["psi_width"] == pytest.approx(1.0) and math.isnan(width_only["psi_poison"])


def test_the_published_tau_is_scipys_recomputed_from_the_csv(quick, tmp_path):
    zoo, _, table, _ = quick
    taus = scoring.score(table, zoo)
    assert taus, "no measure could be scored"
    paths = scoring.write_tables(table, taus, "test", results=tmp_path)
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


def test_effects_pair_the_nets_and_give_the_standard_error():
    zoo = sb.Zoo.for_profile("quick").replace(widths=(1, 2), poison_factors=(0.0, 0.5))
    rows = _synthetic(lambda g, w, b: g)  # gap = 0.1 w + 0.3 β + 0.01 seed
    by = {r["hyperparameter"]: r for r in scoring.effects(rows, zoo)}
    assert by["width"]["effect"] == pytest.approx(0.1) and by["poison"]["effect"] == pytest.approx(0.15)
    assert by["width"]["se"] == pytest.approx(0.0, abs=1e-12) and by["width"]["pairs"] == 4
    rows[0]["gap"] += 0.04  # one net of width 1 (β = 0, seed 0): the width's pair differences 0.06, 0.1, 0.1, 0.1
    w = {r["hyperparameter"]: r for r in scoring.effects(rows, zoo)}["width"]
    assert w["effect"] == pytest.approx(0.09) and w["se"] == pytest.approx(0.01)  # sd 0.02 over √4 pairs


def test_the_published_zoo_reads_back_what_the_sweep_exported(quick, tmp_path):
    from genviz_lib import sweep

    zoo, _, table, _ = quick
    taus = scoring.score(table, zoo, samples=50, cmi_samples=5)
    sweep._export(tmp_path, {"scoreboard-test": scoring.net_rows(table), "scoreboard-test-tau": taus}, zoo,
                  {"recipe": "zoo", "profile": "test"})
    assert scoring.published("other", tmp_path) is None
    back = scoring.published("test", tmp_path)
    assert back["zoo"] == zoo and back["about"]["code_fingerprint"] and back["about"]["rows"] == len(table)
    assert [r["gap"] for r in back["table"]] == pytest.approx([r["gap"] for r in table], rel=1e-12)
    assert [{h: r[h] for h in sb.HYPERPARAMETERS} for r in back["table"]] == \
        [{h: r[h] for h in sb.HYPERPARAMETERS} for r in table]
    assert [r["measure"] for r in back["scores"]] == [r["measure"] for r in taus]
    assert back["scores"][0]["tau_lo"] == pytest.approx(taus[0]["tau_lo"], rel=1e-12)


def test_page_labels_name_every_measure_and_refuse_an_unknown_one():
    labels = {key: scoring.label(key) for key in sb.MEASURES}
    assert len(set(labels.values())) == len(sb.MEASURES)  # two measures never share a name
    assert labels["mag_flatness"] == "1/σ′², magnitude-aware flatness"  # a prime, not a quote
    assert labels["params"] == sb.MEASURES["params"][0]  # the rest as the zoo's module names them
    assert not any("_" in text for text in labels.values())  # no code-style subscripts on a page
    with pytest.raises(KeyError, match="mag_flat"):
        scoring.label("mag_flat")


def test_interval_text_prints_a_score_with_its_interval_for_prose_and_for_a_table():
    row = {"tau": 0.2561, "tau_lo": 0.2204, "tau_hi": 0.2957, "worst": 1.0, "worst_lo": 1.0, "worst_hi": 1.0,
           "psi": math.nan, "psi_lo": math.nan, "psi_hi": math.nan}
    assert scoring.interval_text(row, "tau") == "0.26 [0.22, 0.30]"
    assert scoring.interval_text(row, "tau", table=True) == "0.26<br><small>0.22 to 0.30</small>"
    assert scoring.interval_text(row, "worst", table=True) == "1.00"  # every resample agrees: one value
    assert scoring.interval_text(row, "worst") == "1.00 [1.00, 1.00]"
    assert scoring.interval_text(row, "psi") == scoring.interval_text(row, "psi", table=True) == "—"
