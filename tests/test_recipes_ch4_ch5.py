"""The recipes of chapters 4 and 5: the basin measurements of the swiss-roll sweep, the image pair and the rings,
the basins of attraction, and the conv net of chapter 5's homogeneity check."""

import math
import types

import pytest
import torch

from genviz_lib import boundaries, config, landscape, models, norms, train
from genviz_lib.experiments import huang2020, poggio2020


def _tiny_sweep() -> huang2020.PoisonSweep:
    return huang2020.PoisonSweep(betas=(0.0, 0.3), seeds=1, steps=150, n_poison=400, poison_batch=40)


def _no_training(monkeypatch):
    fail = lambda *a, **k: pytest.fail("should have been read back from the cache")
    monkeypatch.setattr(train, "train_ensemble", fail)
    monkeypatch.setattr(train, "train", fail)
    monkeypatch.setattr(huang2020, "basin_summary", fail)


def test_measurement_settings_come_per_profile_and_refuse_impossible_values():
    quick, book = huang2020.SweepBasins.for_profile("quick"), huang2020.SweepBasins.for_profile("book")
    assert quick.cutoffs == (1.0, 3.0, 10.0) and book.cutoffs == (0.01, 0.1, 1.0)
    assert huang2020.SweepBasins.for_profile("full").directions == 3000  # Huang et al.'s count
    assert huang2020.ImageBasins.for_profile("full").directions == 1000
    assert huang2020.Attraction.for_profile("book").distances[0] == 0.0
    assert huang2020.RingBasins.for_profile("book").directions == 100
    assert poggio2020.HomogeneityConv.for_profile("book").training == poggio2020.Normalized.for_profile("book").training
    with pytest.raises(ValueError, match="at least one direction"):
        quick.replace(directions=0)
    with pytest.raises(ValueError, match="one cutoff"):
        huang2020.ImageBasins(cutoffs=[], directions=3)
    with pytest.raises(ValueError, match="distances ≥ 0"):
        huang2020.Attraction.for_profile("quick").replace(distances=[-1.0, 1.0])
    with pytest.raises(ValueError, match="at least one direction"):
        huang2020.RingBasins(directions=0)
    with pytest.raises(ValueError, match="at least one step"):
        poggio2020.HomogeneityConv.for_profile("quick").replace(steps=0)
    assert huang2020.Attraction.for_profile("quick").replace(distances=[0, 2]).distances == (0, 2)  # a tuple


def test_worst_fitted_and_at_cutoffs_pick_what_chapter_4_tabulates():
    run = lambda tr, te: types.SimpleNamespace(final=dict(train_acc=tr, test_acc=te, train_loss=0.0, test_loss=0.0))
    sweep = huang2020.Sweep(None, [0.0, 0.1, 0.2], [[run(1, .9), run(1, .6), run(.9, .1)],
                                                   [run(1, .8), run(.995, .6), run(1, .7)]])
    # β = 0.2 of seed 0 is the worst but does not fit; the tie at 0.6 goes to the first in the sweep's order
    assert huang2020.worst_fitted(sweep) == (0.1, 0)
    assert huang2020.worst_fitted(sweep, min_train_acc=0.8) == (0.2, 0)
    with pytest.raises(ValueError, match="no net of the sweep fits"):
        huang2020.worst_fitted(sweep, min_train_acc=1.01)
    summary = dict(cutoffs=[1.0, 3.0], radii=torch.tensor([[1.0, 3.0], [2.0, 4.0]]), log10_volume=[-5.0, -2.0])
    rows = huang2020.at_cutoffs(summary, [0.1, 1.0, 3.0])
    assert [r["cutoff"] for r in rows] == [0.1, 1.0, 3.0]
    assert math.isnan(rows[0]["radius"]) and math.isnan(rows[0]["log10_V"])  # below the net's own loss
    assert rows[1]["radius"] == 2.0 and rows[2] == dict(cutoff=3.0, radius=3.0, log10_V=-2.0)


def test_sweep_basins_measure_every_net_in_record_order_then_come_from_the_cache(tmp_path, monkeypatch):
    sweep_settings = _tiny_sweep()
    measure = huang2020.SweepBasins(cutoffs=(1.0, 3.0), directions=4, eigenvalues=2, frobenius_samples=2)
    cache = config.ResultsCache(tmp_path)
    summaries = huang2020.sweep_basins(sweep_settings, measure, cache, progress=False)
    sweep = huang2020.poison_sweep(sweep_settings, cache, progress=False)
    assert len(summaries) == len(sweep.records()) == 2
    for summ, rec in zip(summaries, sweep.records()):
        net = sweep.runs[rec["seed"]][sweep.betas.index(rec["beta"])].model
        assert summ["n"] == models.count_parameters(net) == 3614
        # the recipe's summary is basin_summary of that net, on the clean training set
        direct = huang2020.basin_summary(net, sweep.roll.train, measure.cutoffs, 4, eigenvalues=2,
                                         frobenius_samples=2)
        assert summ["loss"] == direct["loss"] and torch.equal(summ["radii"], direct["radii"])
        assert summ["cutoffs"] == [c for c in measure.cutoffs if c > summ["loss"]]
        assert len(summ["eigenvalues"]) == 2 and summ["frobenius"] > 0
    _no_training(monkeypatch)
    again = huang2020.sweep_basins(sweep_settings, measure, cache, progress=False)
    assert [a["log10_volume"] for a in again] == [s["log10_volume"] for s in summaries]


def test_attraction_runs_start_from_the_moved_minimizer_and_fresh_nets(tmp_path, monkeypatch):
    sweep_settings = _tiny_sweep()
    cache = config.ResultsCache(tmp_path)
    sweep = huang2020.poison_sweep(sweep_settings, cache, progress=False)
    settings = huang2020.Attraction(distances=(0.0, 1.0), directions=2, fresh=1, steps=5)
    seen = []
    real = train.train_ensemble

    def recording(starts, *args, **kwargs):
        seen.extend(landscape.flatten(m) for m in starts)
        return real(starts, *args, **kwargs)

    monkeypatch.setattr(train, "train_ensemble", recording)
    rows = huang2020.attraction_runs(sweep_settings, settings, (0.3, 0), cache, progress=False)
    # t = 0 runs once (not once per direction), then t = 1 along each direction, then the fresh start
    assert [(r["start"], r["distance"]) for r in rows[:3]] == [("bad", 0.0), ("bad", 1.0), ("bad", 1.0)]
    assert rows[3]["start"] == "fresh" and len(rows) == 4
    theta_bad = landscape.flatten(sweep.runs[0][1].model)
    assert torch.equal(seen[0], theta_bad)  # the minimizer itself
    assert (seen[1] - theta_bad).norm().item() == pytest.approx(1.0, rel=1e-4)  # a unit step away
    assert (seen[3] - theta_bad).norm().item() == pytest.approx(rows[3]["distance"])
    assert all(0 <= r["test_acc"] <= 1 for r in rows)
    _no_training(monkeypatch)
    assert huang2020.attraction_runs(sweep_settings, settings, (0.3, 0), cache, progress=False) == rows


def test_ring_basins_count_regions_margins_and_radii_per_net(tmp_path, monkeypatch):
    rings = huang2020.Rings(gaps=(0.3,), steps=150, seeds=1)
    measure = huang2020.RingBasins(directions=3, resolution=60)
    cache = config.ResultsCache(tmp_path)
    rows = huang2020.ring_basins(rings, measure, cache, progress=False)
    assert [(r["gap"], r["seed"]) for r in rows] == [(0.3, 0)]
    ring_data, fitted = huang2020.rings_runs(rings, cache, progress=False)[0.3]
    stats = boundaries.boundary_stats(fitted[0].model, ring_data, extent=1.2, resolution=60)
    assert rows[0]["regions"] == stats["regions"] and rows[0]["margin"] == float(stats["margin"].min())
    assert rows[0]["train_acc"] == fitted[0].final["train_acc"] == 1.0
    assert rows[0]["radius"] > 0
    _no_training(monkeypatch)
    assert huang2020.ring_basins(rings, measure, cache, progress=False) == rows


def test_image_basins_measure_the_clean_and_the_poisoned_net_in_that_order(svhn_root, tmp_path, monkeypatch):
    images = huang2020.Images.for_profile("quick").replace(dataset="svhn", n_train=20, n_test=10, n_poison=30,
                                                          steps=3, poison_batch=8)
    measure = huang2020.ImageBasins(cutoffs=(10.0, 30.0), directions=2)
    cache = config.ResultsCache(tmp_path / "cache")
    summaries = huang2020.image_basins(images, measure, cache, root=svhn_root, progress=False)
    splits, pair = huang2020.image_minimizers(images, cache, root=svhn_root, progress=False)
    assert list(pair) == ["clean", "poisoned"] and len(summaries) == 2
    for summ, run in zip(summaries, pair.values()):
        assert summ["n"] == models.count_parameters(run.model)
        assert summ["radii"].shape == (len(summ["cutoffs"]), 2)
    _no_training(monkeypatch)
    again = huang2020.image_basins(images, measure, cache, root=svhn_root, progress=False)
    assert [a["loss"] for a in again] == [s["loss"] for s in summaries]


def test_homogeneity_convnet_is_bias_free_homogeneous_and_cached(cifar_root, tmp_path, monkeypatch):
    t = poggio2020.Training.for_profile("full").replace(n_train=40, n_test=20)
    settings = poggio2020.HomogeneityConv(training=t, steps=3, channels=(4, 4), batch=8)
    cache = config.ResultsCache(tmp_path / "cache")
    run = poggio2020.homogeneity_convnet(settings, cache, root=cifar_root, progress=False)
    assert isinstance(run.model, models.SmallCNN) and run.steps == 3
    assert all(name.endswith("weight") for name, _ in run.model.named_parameters())  # no biases
    X = poggio2020._splits(t, t.n_train, cifar_root).test.X
    check = norms.homogeneity_check(run.model, X)
    assert check["max_rel_error"] < 1e-12 and check["same_predictions"] == 1.0
    _no_training(monkeypatch)
    again = poggio2020.homogeneity_convnet(settings, cache, root=cifar_root, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                 run.model.state_dict().values()))
