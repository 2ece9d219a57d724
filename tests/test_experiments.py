import pytest

from genviz_lib import config, experiments, models, train


def test_swiss_roll_minimizers_train_once_then_come_from_the_cache(tmp_path, monkeypatch):
    settings = dict(experiments.swiss_roll_settings("quick"), steps=400)
    cache = config.ResultsCache(tmp_path)
    first = experiments.swiss_roll_minimizers(settings, cache, progress=False)
    assert len(first.runs) == len(settings["betas"]) == 2
    assert first.good.final["train_acc"] >= 0.95 and first.good.final["test_acc"] >= 0.9
    # the poisoned net (β = 0.2 → 0.4) is far worse on the test set than the clean one
    assert first.runs[1].final["test_acc"] < first.good.final["test_acc"] - 0.1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached minimizers should have been read back")

    monkeypatch.setattr(train, "train_ensemble", no_training)
    again = experiments.swiss_roll_minimizers(settings, cache, progress=False)
    assert again.runs[1].final == first.runs[1].final


def test_bad_picks_the_worst_net_that_fits():
    run = lambda tr, te: train.TrainResult(None, {"step": [0], "train_loss": [0.0], "train_acc": [tr],
                                                  "test_loss": [0.0], "test_acc": [te]}, [], 0, "", 0.0)
    m = experiments.Minimizers(None, [0.0, 0.1, 0.2, 0.3], [run(1, .99), run(1, .4), run(.995, .2), run(.9, .05)])
    beta, r = m.bad()
    assert beta == 0.2 and r.final["test_acc"] == 0.2  # β = 0.3 is worse on the test set but does not fit
    assert m.bad(min_train_acc=0.8)[0] == 0.3
    assert experiments.Minimizers(None, [0.0, 0.1], [run(1, 1), run(.5, .5)]).bad()[0] == 0.1  # none fits


def test_the_first_poison_factor_must_be_zero(tmp_path):
    with pytest.raises(ValueError, match="must be 0"):
        experiments.swiss_roll_minimizers(dict(experiments.swiss_roll_settings("quick"), betas=[0.1, 0.2]),
                                          config.ResultsCache(tmp_path))


def test_image_minimizers_run_the_full_profile_path_on_stand_in_svhn(svhn_root, tmp_path):
    # The paper's setting (ResNet-20, SGD with momentum, minibatches, poison from "extra"), scaled down to
    # stand-in files and a few steps: the code path the `full` profile takes on a GPU.
    settings = dict(experiments.image_settings("full"), n_train=20, n_test=10, n_poison=30, steps=3, batch=8,
                    poison_batch=8)
    splits, pair = experiments.image_minimizers(settings, config.ResultsCache(tmp_path / "cache"), root=svhn_root,
                                                progress=False)
    assert splits.name == "SVHN" and len(splits.poison) == 30
    assert set(pair) == {"clean", "poisoned"}
    assert models.count_parameters(pair["clean"].model) == 269_722  # the paper's "ResNet-18"
    assert pair["clean"].steps == pair["poisoned"].steps == 3
    with pytest.raises(ValueError, match="dataset must be one of"):
        experiments.image_minimizers(dict(settings, dataset="mnist"), config.ResultsCache(tmp_path / "c2"))
