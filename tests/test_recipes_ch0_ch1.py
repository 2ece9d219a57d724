"""The recipes of chapter 1: the puzzle on MNIST-1D and Fashion-MNIST, the optimizer table, Wu et al.'s five points
and tables, and Poggio et al.'s size and width sweeps — on tiny settings and a stand-in Fashion-MNIST."""

import math

import pytest
import torch

from genviz_lib import config, models, train
from genviz_lib.experiments import huang2020, poggio2020, wu2017


def _no_training(monkeypatch):
    fail = lambda *a, **k: pytest.fail("should have been read back from the cache")
    for name in ("train", "train_ensemble", "fit_regression"):
        monkeypatch.setattr(train, name, fail)
    monkeypatch.setattr(models, "min_norm_quadratic_model", fail)


def _same(a, b):
    """Equal nested results (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def test_settings_keep_the_chapters_values_and_refuse_impossible_ones():
    first = huang2020.SwissRoll.for_profile("book")  # chapters 0, 2 and 3
    assert first.betas == (0.0, 0.05, 0.1, 0.15, 0.2) and first.steps == 12000 and first.poison_batch == 1000
    assert huang2020.Puzzle.for_profile("full").dataset == "cifar10"
    assert huang2020.Puzzle.for_profile("book").widths == (512, 512)
    assert huang2020.Optimizers.for_profile("book").optimizers == tuple(huang2020.OPTIMIZERS)
    assert len(huang2020.OPTIMIZERS) == 15
    assert wu2017.FivePoints.for_profile("book").depths == (2, 4, 6, 8, 10, 12)
    assert poggio2020.SizeAndWidth.for_profile("quick").sizes == (100, 200)
    for profile in ("quick", "book", "full"):  # Wu et al.'s tables run on the optimizer table's net and data
        tables, optim = wu2017.BatchAndInit.for_profile(profile), huang2020.Optimizers.for_profile(profile)
        assert (tables.n_train, tables.n_test, tables.widths, tables.seed) == \
               (optim.n_train, optim.n_test, optim.widths, optim.seed)
    with pytest.raises(ValueError, match="first poison factor must be 0"):
        first.replace(betas=[0.1, 0.2])
    with pytest.raises(ValueError, match="dataset must be one of"):
        huang2020.Puzzle.for_profile("quick").replace(dataset="mnist")
    with pytest.raises(ValueError, match=r"unknown optimizers \['Lion'\]"):
        huang2020.Optimizers.for_profile("quick").replace(optimizers=["SGD", "Lion"])
    with pytest.raises(ValueError, match="at least 20 steps"):
        huang2020.Optimizers.for_profile("quick").replace(steps=10)
    with pytest.raises(ValueError, match="depths of at least 2"):
        wu2017.FivePoints(depths=[1, 2], steps=10)
    with pytest.raises(ValueError, match=r"unknown initializations \['orthogonal'\]"):
        wu2017.BatchAndInit.for_profile("quick").replace(inits=["orthogonal"])
    with pytest.raises(ValueError, match="at least 1"):
        wu2017.BatchAndInit.for_profile("quick").replace(batch_sizes=[None, 0])
    with pytest.raises(ValueError, match="runs 0"):
        wu2017.BatchAndInit.for_profile("quick").replace(runs=0)
    with pytest.raises(ValueError, match="at least 10 images"):
        poggio2020.SizeAndWidth.for_profile("quick").replace(sizes=[5, 200])
    assert huang2020.SwissRoll(betas=[0.0, 0.1], steps=20, n_poison=10, poison_batch=5).betas == (0.0, 0.1)  # a tuple
    assert huang2020.SignalPuzzle.for_profile("book").num_samples == 5000  # MNIST-1D's own 4,000 / 1,000 split
    with pytest.raises(ValueError, match="too few to fit"):
        huang2020.SignalPuzzle.for_profile("book").replace(degree=2)


def test_puzzle_fits_true_labels_and_the_linear_model_fits_exactly(tmp_path, fashion_root, monkeypatch):
    cache = config.ResultsCache(tmp_path / "cache")
    settings = huang2020.Puzzle(dataset="fashion", n_train=20, n_test=10, widths=(64,), steps=300)
    splits, res = huang2020.puzzle(settings, cache, root=fashion_root, progress=False)
    assert len(splits.train) == 20 and len(splits.test) == 10
    assert res["true"]["history"]["train_acc"][-1] == 1.0 and res["true"]["steps"] < 300  # stopped once fitted
    assert res["true"]["params"] == res["random"]["params"] == 784 * 64 + 64 + 64 * 10 + 10
    assert res["linear"]["train"][1] == 1.0  # more features than images: the least-norm solution fits them all
    assert res["linear"]["params"] == 10 * (196 + 196 * 197 // 2) + 10
    _no_training(monkeypatch)
    assert _same(huang2020.puzzle(settings, cache, root=fashion_root, progress=False)[1], res)


def test_signal_puzzle_fits_mnist1d_with_both_nets_and_the_linear_model(tmp_path, monkeypatch):
    cache = config.ResultsCache(tmp_path / "cache")
    settings = huang2020.SignalPuzzle(num_samples=100, steps=400, channels=(8,), widths=(32,), degree=2)
    splits, res = huang2020.signal_puzzle(settings, cache, progress=False)
    assert len(splits.train) == 80 and len(splits.test) == 20 and splits.train.X.shape[1] == 40
    assert res["linear"]["train"][1] == 1.0 and res["linear"]["features"] == 40 + 40 * 41 // 2
    assert res["linear"]["params"] == 10 * 860  # no bias: the monomials carry the model
    assert res["cnn"]["params"] == 8 * 5 + 8 + 8 * 20 * 10 + 10  # one conv layer: 40 → 20 samples
    assert res["mlp"]["history"]["train_acc"][-1] == 1.0 and res["mlp"]["steps"] < 400  # stopped once fitted
    _no_training(monkeypatch)
    assert _same(huang2020.signal_puzzle(settings, cache, progress=False)[1], res)


def test_optimizer_comparison_has_one_row_per_optimizer_and_the_linear_model(tmp_path, fashion_root,
                                                                              monkeypatch):
    cache = config.ResultsCache(tmp_path / "cache")
    settings = huang2020.Optimizers(n_train=20, n_test=10, steps=20, optimizers=("SGD", "LBFGS"), widths=(16,))
    rows = huang2020.optimizer_comparison(settings, cache, root=fashion_root, progress=False)
    assert list(rows) == ["SGD", "LBFGS", huang2020.LINEAR]
    assert rows["SGD"]["steps"] <= 20 and rows["LBFGS"]["steps"] <= 1  # LBFGS gets a twentieth of the budget
    assert rows[huang2020.LINEAR]["train_acc"] == 1.0 and math.isnan(rows[huang2020.LINEAR]["steps"])
    with monkeypatch.context() as m:
        _no_training(m)
        assert _same(huang2020.optimizer_comparison(settings, cache, root=fashion_root, progress=False), rows)
    # a learning rate is part of a row's key: changing it trains that row again
    monkeypatch.setitem(huang2020.OPTIMIZERS, "SGD", (0.5, {}))
    trained = []
    real = train.train
    monkeypatch.setattr(train, "train", lambda *a, **k: trained.append(k["desc"]) or real(*a, **k))
    huang2020.optimizer_comparison(settings, cache, root=fashion_root, progress=False)
    assert trained == ["SGD"]


def test_five_point_fits_give_one_curve_per_depth_and_an_attacked_one(tmp_path, monkeypatch):
    cache = config.ResultsCache(tmp_path / "cache")
    settings = wu2017.FivePoints(depths=(2,), steps=30)
    fits = wu2017.five_point_fits(settings, cache)
    assert fits.x.tolist() == pytest.approx(list(wu2017.FIVE_X)) and fits.grid.shape == (300,)
    assert torch.allclose(fits.y, wu2017.cubic(fits.x), atol=0.5)  # noise of standard deviation 0.1
    assert list(fits.curves) == [2, "attacked"]
    assert fits.curves[2]["params"] == 40 + 40 + 40 + 1
    assert fits.curves["attacked"]["params"] == 80 + 4 * (40 * 40 + 40) + 41
    assert fits.curves[2]["y"].shape == (300,)
    x = fits.curves["attacked"]["attack_x"]
    assert (wu2017.attack_targets(x) - wu2017.cubic(x)).tolist() == [25.0, -25.0] * 3
    _no_training(monkeypatch)
    assert _same(wu2017.five_point_fits(settings, cache).curves, fits.curves)


def test_batch_and_init_runs_give_one_row_per_batch_size_and_per_initialization(tmp_path, fashion_root,
                                                                                  monkeypatch):
    cache = config.ResultsCache(tmp_path / "cache")
    settings = wu2017.BatchAndInit(n_train=20, n_test=10, batch_sizes=(None, 10), inits=("he_normal", "uniform"),
                                   steps=5, init_batch=10, widths=(16,), runs=2)
    table1, table2 = wu2017.batch_and_init_runs(settings, cache, root=fashion_root, progress=False)
    assert [(row["batch"], row["run"]) for row in table1] == [(None, 0), (None, 1), (10, 0), (10, 1)]
    assert len(table2) == 2
    assert table1[0]["train_loss"] != table1[1]["train_loss"]  # each run starts from its own weights
    assert all(row["steps"] <= 5 and {"train_acc", "test_acc", "train_loss", "test_loss"} <= row.keys()
               for row in table1 + table2)
    _no_training(monkeypatch)
    assert _same(wu2017.batch_and_init_runs(settings, cache, root=fashion_root, progress=False), (table1, table2))


def test_size_and_width_sweeps_give_one_row_per_size_and_per_width(tmp_path, fashion_root, monkeypatch):
    cache = config.ResultsCache(tmp_path / "cache")
    settings = poggio2020.SizeAndWidth(sizes=(10, 20), widths=(4,), n_train_widths=20, n_test=10, steps=5,
                                       size_width=8)
    by_size, by_width = poggio2020.size_and_width_sweeps(settings, cache, root=fashion_root, progress=False)
    assert len(by_size) == 2 and len(by_width) == 1
    assert by_size[0]["params"] == 196 * 8 + 8 + 8 * 8 + 8 + 8 * 10 + 10  # 14×14 inputs, two hidden layers
    assert by_width[0]["params"] == 196 * 4 + 4 + 4 * 4 + 4 + 4 * 10 + 10
    _no_training(monkeypatch)
    again = poggio2020.size_and_width_sweeps(settings, cache, root=fashion_root, progress=False)
    assert _same(again, (by_size, by_width))
