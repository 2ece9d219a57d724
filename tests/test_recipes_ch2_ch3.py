"""The recipes of chapters 2 and 3 (the minefield, the three ways, the bi-criteria nets) and the slicing helper
of chapter 3, on settings small enough to train in seconds."""

import math

import pytest
import torch

from genviz_lib import config, landscape, models
from genviz_lib.experiments import huang2020, neyshabur2017


def _entries(cache, name):
    return sorted((cache.root / name).glob("*.pt"))


# --------------------------------------------------------------------------------------------
# The minefield
# --------------------------------------------------------------------------------------------

SMALL_FIELD = dict(good_steps=40, start_every=20, bad_steps=30, n_poison=200, poison_batch=50)


def test_minefield_starts_a_poisoned_run_from_every_chosen_checkpoint_and_reads_it_back(tmp_path):
    settings = huang2020.Minefield(**SMALL_FIELD)
    cache = config.ResultsCache(tmp_path)
    field = huang2020.minefield(settings, cache, progress=False)
    n = models.count_parameters(models.minefield_net())
    steps = [step for step, _ in field.good.checkpoints]
    assert steps == [0, 10, 20, 30, 40]  # every 10 steps, the first and the last included
    assert [steps[i] for i in field.picks] == [0, 20, 40] and len(field.bad) == 3
    trajectory, points = field.trajectory(), field.bad_points()
    assert trajectory.shape == (5, n) and points.shape == (3, n)
    # the last checkpoint is the ordinary run's final weights
    torch.testing.assert_close(trajectory[-1], landscape.flatten(field.good.model), rtol=0, atol=0)
    length = sum(float((trajectory[i + 1] - trajectory[i]).norm()) for i in range(4))
    assert field.length() == pytest.approx(length, rel=1e-5)
    rows = field.records()
    assert [r["start"] for r in rows] == [0, 20, 40]
    for r, i, point in zip(rows, field.picks, points):
        assert r["distance"] == pytest.approx(float((point - trajectory[i]).norm()), rel=1e-6)
        assert r["ratio"] == pytest.approx(r["distance"] / field.length())
        assert r["distance"] > 0  # every poisoned run moved away from where it started
    assert rows[1]["start_train_acc"] == field.good.history["train_acc"][field.good.history["step"].index(20)]

    again = huang2020.minefield(settings, cache, progress=False)
    assert len(_entries(cache, "ch2-minefield-ordinary")) == 1
    assert len(_entries(cache, "ch2-minefield-poisoned")) == 1  # 3 runs, groups of runs_per_job = 8
    torch.testing.assert_close(again.bad_points(), points, rtol=0, atol=0)
    assert again.records() == rows
    # in groups of two, the same three runs come out (each member trains as it would alone) from two more
    # entries, and the ordinary run is not trained again
    grouped = huang2020.minefield(settings.replace(runs_per_job=2), cache, progress=False)
    torch.testing.assert_close(grouped.bad_points(), points, rtol=1e-5, atol=1e-6)
    assert len(_entries(cache, "ch2-minefield-ordinary")) == 1 and len(_entries(cache, "ch2-minefield-poisoned")) == 3


def test_initialization_gap_is_the_mean_distance_of_seeded_pairs():
    nets = []
    for seed in (1, 2, 3, 4):
        torch.manual_seed(seed)
        nets.append(landscape.flatten(models.minefield_net()))
    by_hand = (float((nets[0] - nets[1]).norm()) + float((nets[2] - nets[3]).norm())) / 2
    assert huang2020.Field.initialization_gap(pairs=2) == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("change, message", [
    (dict(start_every=15), "start_every must be a positive multiple of every"),
    (dict(poison_batch=500), "poison_batch ≤ n_poison"),
    (dict(bad_steps=0), "need good_steps, bad_steps, every and runs_per_job ≥ 1"),
    (dict(runs_per_job=0), "need good_steps, bad_steps, every and runs_per_job ≥ 1"),
])
def test_minefield_settings_refuse_impossible_values_before_training(change, message):
    with pytest.raises(ValueError, match=message):
        huang2020.Minefield(**SMALL_FIELD).replace(**change)


def test_minefield_profiles_are_those_of_the_chapter():
    quick, book = huang2020.Minefield.for_profile("quick"), huang2020.Minefield.for_profile("book")
    assert (quick.good_steps, quick.start_every, quick.bad_steps, quick.n_poison) == (200, 50, 200, 2000)
    assert (book.good_steps, book.start_every, book.bad_steps, book.n_poison) == (2000, 100, 8000, 20000)
    assert (book.every, book.beta, book.ramp, book.lr, book.poison_batch) == (10, 0.15, (1, 1.5, 2), 5e-3, 400)


# --------------------------------------------------------------------------------------------
# Three ways to a bad minimum
# --------------------------------------------------------------------------------------------


def test_three_ways_trains_the_clean_net_and_one_per_way_and_size(tmp_path):
    settings = huang2020.ThreeWays(n_train=50, sizes=(0, 40), steps=200, widths=(64,), lr=1e-2)
    cache = config.ResultsCache(tmp_path)
    rows = huang2020.three_ways(settings, cache, progress=False)
    assert [(r["method"], r["added"]) for r in rows] == [
        ("clean", 0), ("poisoning", 40), ("attack set", 40), ("confusion set", 40)]
    assert all(r["train"] == 1.0 for r in rows)  # every net fits its 50 training digits
    # an added set almost as large as the training set costs every way test accuracy
    assert all(r["test"] < rows[0]["test"] - 0.1 for r in rows[1:])

    assert huang2020.three_ways(settings, cache, progress=False) == rows
    assert len(_entries(cache, "ch2-three-ways")) == 4  # one entry per net
    # a net does not depend on the others trained with it: the clean net alone is the same net
    alone = huang2020.three_ways(settings.replace(sizes=(0,)), cache, progress=False)
    assert alone == rows[:1]


@pytest.mark.parametrize("change, message", [
    (dict(sizes=(0, 1200)), r"the added sets must have 0 to 1150 images"),
    (dict(n_train=1300), r"need 1 ≤ n_train ≤ 1200"),
    (dict(beta=1.0), r"beta must lie in \(0, 1\)"),
])
def test_three_ways_settings_refuse_impossible_values_before_training(change, message):
    with pytest.raises(ValueError, match=message):
        huang2020.ThreeWays(n_train=50, sizes=(0, 40), steps=10).replace(**change)


# --------------------------------------------------------------------------------------------
# The bi-criteria nets of chapter 3
# --------------------------------------------------------------------------------------------


def test_bicriteria_runs_fit_true_and_random_labels_and_trade_kl_for_sharpness(tmp_path, fashion_root):
    settings = neyshabur2017.Bicriteria(sizes=(20,), steps=300, alphas=(1e-3, 1e-2), samples=4, widths=(32,),
                                        n_test=10, sharp_steps=5)
    cache = config.ResultsCache(tmp_path / "cache")
    rows = neyshabur2017.bicriteria_runs(settings, cache, root=fashion_root, progress=False)
    assert [(r["size"], r["labels"]) for r in rows] == [(20, "true"), (20, "random")]
    for r in rows:
        assert r["train_acc"] == 1.0 and r["steps"] < 300  # it stops as soon as it fits
        assert len(r["kl"]) == len(r["sharp"]) == len(r["stderr"]) == 2
        # σ = α(10|w| + 1) grows in proportion to α, so the KL term Σ w²/(2σ²) falls by (1e-3/1e-2)²
        assert r["kl"][1] / r["kl"][0] == pytest.approx(0.01, rel=1e-6)
        assert all(math.isfinite(v) for v in r["sharp"] + r["stderr"])
        assert r["max_sharpness"] > 0  # ascent from the box's random starts always finds some rise

    assert neyshabur2017.bicriteria_runs(settings, cache, root=fashion_root, progress=False) == rows
    assert len(_entries(cache, "ch3-bicriteria")) == 2


@pytest.mark.parametrize("change, message", [
    (dict(sizes=(5,)), "at least 10 images"),
    (dict(alphas=(0.0, 1e-2)), "positive noise scales"),
    (dict(samples=1), "at least 2 noise draws"),
    (dict(sharp_steps=0), "need sharp_steps"),
])
def test_bicriteria_settings_refuse_impossible_values_before_training(change, message):
    with pytest.raises(ValueError, match=message):
        neyshabur2017.Bicriteria.for_profile("quick").replace(**change)


def test_bicriteria_profiles_are_those_of_the_chapter():
    quick, book = neyshabur2017.Bicriteria.for_profile("quick"), neyshabur2017.Bicriteria.for_profile("book")
    assert (quick.sizes, quick.steps, quick.alphas, quick.samples) == ((100,), 100, (1e-3, 1e-2), 20)
    assert (book.sizes, book.steps, book.samples, len(book.alphas)) == ((250, 500, 1000), 3000, 200, 7)
    assert (quick.sharp_steps, book.sharp_steps, book.sharp_restarts, book.sharp_alpha) == (10, 100, 4, 5e-4)
    assert (book.widths, book.n_test, book.downsample, book.label_seed, book.seed) == ((128, 128), 500, 2, 1, 0)


# --------------------------------------------------------------------------------------------
# Slices on a plane of filter-normalized directions
# --------------------------------------------------------------------------------------------


def test_filter_normalized_slices_of_a_quadratic_are_the_parabolas_computed_by_hand():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    theta = landscape.flatten(model)
    f = lambda Theta: (Theta ** 2).sum(-1)  # f(θ) = ‖θ‖², batched over rows
    out = landscape.filter_normalized_slices(f, model, torch.Generator().manual_seed(4), span=0.5, points_1d=11,
                                             points_2d=5, spans_2d=(0.5, 0.1))
    d1, d2 = landscape.filter_normalized_plane(model, torch.Generator().manual_seed(4))
    torch.testing.assert_close(out["d1"], d1, rtol=0, atol=0)
    torch.testing.assert_close(out["d2"], d2, rtol=0, atol=0)
    assert float(d1 @ d2) == pytest.approx(0, abs=1e-6)
    a = out["a1"]
    assert a.dtype == theta.dtype and len(a) == 11 and (a == 0).sum() == 1
    assert float(a[0]) == pytest.approx(-0.5) and float(a[-1]) == pytest.approx(0.5)
    # ‖θ + a·d1‖² = ‖θ‖² + 2a θ·d1 + a²‖d1‖²
    torch.testing.assert_close(out["line"], theta @ theta + 2 * a * (theta @ d1) + a ** 2 * (d1 @ d1))
    assert sorted(out["planes"]) == [0.1, 0.5]
    for s, (a2, values) in out["planes"].items():
        assert len(a2) == 5 and float(a2[-1]) == pytest.approx(s)
        B, A = torch.meshgrid(a2, a2, indexing="ij")  # rows follow the second direction
        # d1 ⟂ d2, so the cross term vanishes
        by_hand = (theta @ theta + 2 * A * (theta @ d1) + 2 * B * (theta @ d2) + A ** 2 * (d1 @ d1)
                   + B ** 2 * (d2 @ d2))
        torch.testing.assert_close(values, by_hand, rtol=1e-5, atol=1e-5)
    only_line = landscape.filter_normalized_slices(f, model, torch.Generator().manual_seed(4), 0.5, 11)
    assert "planes" not in only_line
    torch.testing.assert_close(only_line["line"], out["line"], rtol=0, atol=0)
