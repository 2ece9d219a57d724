import math

import pytest
import torch

from genviz_lib import config, curvature, data, landscape, models, norms, train, volume
from genviz_lib.experiments import huang2020, poggio2020


def _normalized(profile, **training):
    """Chapter 5's settings of a profile with some training fields changed."""
    s = poggio2020.Normalized.for_profile(profile)
    return s.replace(training=s.training.replace(**training))


def test_swiss_roll_minimizers_train_once_then_come_from_the_cache(tmp_path, monkeypatch):
    settings = huang2020.SwissRoll.for_profile("quick").replace(steps=400)
    cache = config.ResultsCache(tmp_path)
    first = huang2020.swiss_roll_minimizers(settings, cache, progress=False)
    assert len(first.runs) == len(settings.betas) == 2
    assert first.good.final["train_acc"] >= 0.95 and first.good.final["test_acc"] >= 0.9
    # the poisoned net (β = 0.2 → 0.4) is far worse on the test set than the clean one
    assert first.runs[1].final["test_acc"] < first.good.final["test_acc"] - 0.1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached minimizers should have been read back")

    monkeypatch.setattr(train, "train_ensemble", no_training)
    again = huang2020.swiss_roll_minimizers(settings, cache, progress=False)
    assert again.runs[1].final == first.runs[1].final


def test_bad_picks_the_worst_net_that_fits():
    run = lambda tr, te: train.TrainResult(None, {"step": [0], "train_loss": [0.0], "train_acc": [tr],
                                                  "test_loss": [0.0], "test_acc": [te]}, [], 0, "", 0.0)
    m = huang2020.Minimizers(None, [0.0, 0.1, 0.2, 0.3], [run(1, .99), run(1, .4), run(.995, .2), run(.9, .05)])
    beta, r = m.bad()
    assert beta == 0.2 and r.final["test_acc"] == 0.2  # β = 0.3 is worse on the test set but does not fit
    assert m.bad(min_train_acc=0.8)[0] == 0.3
    assert huang2020.Minimizers(None, [0.0, 0.1], [run(1, 1), run(.5, .5)]).bad()[0] == 0.1  # none fits


def test_settings_are_frozen_checked_on_creation_and_keyed_as_they_are(tmp_path):
    settings = huang2020.SwissRoll.for_profile("quick")
    with pytest.raises(ValueError, match="must be 0"):
        settings.replace(betas=[0.1, 0.2])  # before any training: the settings themselves refuse
    with pytest.raises(TypeError, match="has no field bettas"):
        settings.replace(bettas=(0.0,))
    with pytest.raises(AttributeError):
        settings.steps = 10  # frozen: the cache keyed on these values
    assert settings.replace(betas=[0.0, 0.3]).betas == (0.0, 0.3)  # a list is stored as a tuple
    assert settings.replace(steps=300) == settings  # equal values, equal settings
    cache = config.ResultsCache(tmp_path)
    assert cache.key("r", settings) == cache.key("r", huang2020.SwissRoll.for_profile("quick"))
    assert cache.key("r", settings) != cache.key("r", settings.replace(steps=301))
    assert cache.key("r", settings) != cache.key("r", huang2020.SwissRoll.for_profile("book"))
    # the class is part of the key: a sweep with the same field values is other work
    sweep = huang2020.PoisonSweep(betas=settings.betas, seeds=1, steps=300, n_poison=2000, poison_batch=200)
    assert cache.key("r", sweep) != cache.key("r", settings)
    assert huang2020.PoisonSweep.for_profile("full").seeds == 10 and huang2020.PoisonSweep.for_profile("full").steps == 12000


def test_image_minimizers_run_the_full_profile_path_on_stand_in_svhn(svhn_root, tmp_path):
    # The paper's setting (ResNet-20, SGD with momentum, minibatches, poison from "extra"), scaled down to
    # stand-in files and a few steps: the code path the `full` profile takes on a GPU.
    settings = huang2020.Images.for_profile("full").replace(n_train=20, n_test=10, n_poison=30, steps=3, batch=8,
                                                          poison_batch=8)
    splits, pair = huang2020.image_minimizers(settings, config.ResultsCache(tmp_path / "cache"), root=svhn_root,
                                              progress=False)
    assert splits.name == "SVHN" and len(splits.poison) == 30
    assert set(pair) == {"clean", "poisoned"}
    assert models.count_parameters(pair["clean"].model) == 269_722  # the paper's "ResNet-18"
    assert pair["clean"].steps == pair["poisoned"].steps == 3
    # chapters 3-4 measure these nets: a filter-normalized slice and basin radii through the same objective
    net = pair["poisoned"].model
    f, theta = landscape.objective(net, splits.train.X, splits.train.y), landscape.flatten(net)
    d = landscape.filter_normalized_direction(net, torch.Generator().manual_seed(0))
    along = landscape.slice_1d(f, theta, d, torch.tensor([-0.5, 0.0, 0.5]))
    assert along[1].item() == pytest.approx(float(f(theta[None])[0]), rel=1e-5)
    summary = huang2020.basin_summary(net, splits.train, [along[1].item() + 1.0], directions=3)
    assert summary["cutoffs"] and summary["radii"].shape == (1, 3) and (summary["radii"] > 0).all()
    assert math.isfinite(summary["log10_volume"][0])
    with pytest.raises(ValueError, match="dataset must be one of"):
        settings.replace(dataset="mnist")


def test_poison_sweep_trains_seeds_by_factors_from_per_seed_initializations(tmp_path, monkeypatch):
    settings = huang2020.PoisonSweep.for_profile("quick").replace(betas=[0.0, 0.3], seeds=2, steps=200)
    cache = config.ResultsCache(tmp_path)
    sweep = huang2020.poison_sweep(settings, cache, progress=False)
    assert [len(r) for r in sweep.runs] == [2, 2]
    rows = sweep.records()
    assert [(r["seed"], r["beta"]) for r in rows] == [(0, 0.0), (0, 0.3), (1, 0.0), (1, 0.3)]
    for r in rows:
        assert r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"])
    # seed 1 alone, trained by hand with the same recipe, ends where the ensemble's members end
    torch.manual_seed(settings.seed + 1)
    alone = train.train(models.swiss_roll_net(), sweep.roll.train, sweep.roll.test, poison=sweep.roll.poison,
                        poison_factor=0.3, poison_schedule=train.stepped(200, settings.ramp),
                        poison_batch_size=settings.poison_batch, lr=settings.lr, steps=200,
                        scheduler=train.exponential_decay(200), clip_grad_norm=settings.clip, progress=False)
    assert alone.final["test_acc"] == pytest.approx(sweep.runs[1][1].final["test_acc"], abs=0.011)
    # the clean nets of the two seeds differ (different initializations); poison lowers test accuracy
    assert sweep.runs[0][0].final["train_loss"] != sweep.runs[1][0].final["train_loss"]
    clean = [r["test_acc"] for r in rows if r["beta"] == 0]
    poisoned = [r["test_acc"] for r in rows if r["beta"] > 0]
    assert min(clean) > max(poisoned)
    monkeypatch.setattr(train, "train_ensemble", lambda *a, **k: pytest.fail("should come from the cache"))
    assert huang2020.poison_sweep(settings, cache, progress=False).records() == rows
    with pytest.raises(ValueError, match="at least one seed"):
        settings.replace(seeds=0)


def test_rings_runs_fit_every_gap_and_reject_a_bad_gap_before_training(tmp_path, monkeypatch):
    settings = huang2020.Rings.for_profile("quick").replace(gaps=[0.3], seeds=2, steps=150)
    runs = huang2020.rings_runs(settings, config.ResultsCache(tmp_path), progress=False)
    rings, fitted = runs[0.3]
    assert len(rings) == 130 and len(fitted) == 2
    assert all(r.final["train_acc"] == 1.0 for r in fitted)
    monkeypatch.setattr(train, "train_ensemble", lambda *a, **k: pytest.fail("trained before checking the gaps"))
    with pytest.raises(ValueError, match="gap must lie"):
        huang2020.rings_runs(settings.replace(gaps=[0.1, 0.6]), config.ResultsCache(tmp_path / "other"))


def test_basin_summary_matches_the_engine_and_drops_cutoffs_below_the_loss():
    torch.manual_seed(0)
    roll = data.swiss_roll(n_train=60, n_test=10)
    net = train.train(models.MLP(2, [12, 12], 2), roll.train, steps=300, lr=1e-2, progress=False).model
    f, theta = landscape.objective(net, roll.train.X, roll.train.y), landscape.flatten(net)
    loss = float(f(theta[None])[0])
    out = huang2020.basin_summary(net, roll.train, [loss / 2, 1.0, 3.0], directions=20, seed=3, eigenvalues=2,
                                    frobenius_samples=3)
    assert out["loss"] == pytest.approx(loss) and out["cutoffs"] == [1.0, 3.0]  # loss/2 has no basin
    phis = landscape.random_directions(theta.numel(), 20, torch.Generator().manual_seed(3))
    direct = volume.basin_radius(f, theta, phis, [1.0, 3.0], rtol=1e-2)
    assert torch.allclose(out["radii"], direct.radii)
    assert out["log10_volume"] == pytest.approx((volume.log_volume(direct.radii, theta.numel()) / math.log(10)).tolist())
    assert out["log10_volume"][1] > out["log10_volume"][0]  # a higher cutoff, a larger basin
    dense = torch.linalg.eigvalsh(curvature.hessian(f, theta).double()).flip(0)[:2]  # a small net: all of H
    assert out["eigenvalues"].tolist() == pytest.approx(dense.tolist(), rel=1e-2)
    assert out["V_k"] == pytest.approx(float(dense.log().sum()), abs=2e-2)
    assert out["frobenius"] > 0
    torch.manual_seed(123)  # another global random state: the summary draws only from its own seed
    again = huang2020.basin_summary(net, roll.train, [loss / 2, 1.0, 3.0], directions=20, seed=3, eigenvalues=2,
                                    frobenius_samples=3)
    assert torch.equal(again["eigenvalues"], out["eigenvalues"]) and again["frobenius"] == out["frobenius"]
    with pytest.raises(ValueError, match="at least one direction"):
        huang2020.basin_summary(net, roll.train, [1.0], directions=0)


def test_normalized_family_fits_every_net_and_measures_what_norms_compute(tmp_path, monkeypatch):
    settings = _normalized("quick", n_train=100, n_test=200, widths=(32,)).replace(init_stds=(0.02, 0.1),
                                                                                corrupted=(0.0, 1.0))
    cache = config.ResultsCache(tmp_path)
    fam = poggio2020.normalized_family(settings, cache, progress=False)
    assert [m["group"] for m in fam.members] == ["init", "init", "pretrain", "pretrain", "random"]
    rows = fam.measure()
    for m, row in zip(fam.members, rows):
        assert row["train_loss"] <= settings.training.target_loss and row["train_acc"] == 1.0, m["label"]
        d = fam.data_of(m)
        assert row["train_L2"] == pytest.approx(norms.normalized_loss(m["run"].model, d.train.X, d.train.y), rel=1e-12)
        assert row["scale_L2"] == 1.0 and row["rho_L2"] == pytest.approx(row["frobenius"])
    # the random-label net fitted labels that are not the true ones, and is at chance on its random test labels
    assert (fam.shuffled.train.y != fam.splits.train.y).float().mean() > 0.8
    assert rows[-1]["test_acc"] < 0.25 and rows[0]["test_acc"] > 0.5
    # one R per norm for the whole family: the median of ρ_q / ρ_L2
    ratios = torch.tensor([r["rho_L1"] / r["rho_L2"] for r in rows])
    assert all(r["scale_L1"] == pytest.approx(float(ratios.median())) for r in rows)
    # pretraining on fully corrupted labels left the net at chance before the true labels were fitted
    assert rows[3]["pretrain_test_acc"] < 0.3 < rows[3]["test_acc"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached family should have been read back")

    monkeypatch.setattr(poggio2020, "_to_target", no_training)
    again = poggio2020.normalized_family(settings, cache, progress=False)
    assert again.measure()[1]["test_L2"] == rows[1]["test_L2"]
    with pytest.raises(ValueError, match="corrupted fractions"):
        settings.replace(corrupted=(1.5,))


def test_normalized_trajectory_and_gap_sweep_measure_each_checkpoint_and_size(tmp_path):
    settings = _normalized("quick", n_test=200, widths=(32,)).replace(track_steps=30, track_every=10, sizes=(50, 100),
                                                                     size_stds=(0.05,))
    cache = config.ResultsCache(tmp_path)
    rows = poggio2020.normalized_trajectory(settings, cache, progress=False)
    assert [r["step"] for r in rows] == [0, 10, 20, 30]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and rows[-1]["rho"] > rows[0]["rho"]
    gaps = poggio2020.normalized_gap_sweep(settings, cache, progress=False)
    assert [(r["n"], r["std"]) for r in gaps] == [(50, 0.05), (100, 0.05)]
    assert all(r["train_loss"] <= settings.training.target_loss for r in gaps)
    assert all(r["train_normalized"] < r["test_normalized"] < math.log(10) + 1e-3 for r in gaps)
    with pytest.raises(ValueError, match="at least 10"):
        settings.replace(sizes=(5,))


def test_normalized_family_runs_the_full_profile_path_on_stand_in_cifar(cifar_root, tmp_path):
    # Poggio et al.'s Fig. 2 setting (their 3-layer conv net, SGD with the stepped rate, minibatches), on
    # stand-in CIFAR-10 files and a few steps: the code path the `full` profile takes on a GPU.
    settings = _normalized("full", n_train=40, n_test=20, channels=4, steps=4, batch=8).replace(
        init_stds=poggio2020.POGGIO_INIT_STDS[-2:], corrupted=(0.5,), pretrain_steps=2)
    assert len(poggio2020.Normalized.for_profile("full").init_stds) == 25
    fam = poggio2020.normalized_family(settings, config.ResultsCache(tmp_path), root=cifar_root, progress=False)
    assert fam.splits.name == "CIFAR-10" and fam.splits.train.X.shape == (40, 3, 32, 32)
    assert abs(float(fam.splits.train.X.mean())) < 1e-4  # standardized
    assert [m["group"] for m in fam.members] == ["init", "init", "pretrain", "random"]
    assert all(isinstance(m["run"].model, models.SmallCNN) and m["run"].steps <= 4 for m in fam.members)
    rows = fam.measure()
    assert all(math.isfinite(r["train_L∞"]) and math.isfinite(r["test_L1"]) for r in rows)
