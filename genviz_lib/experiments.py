"""Experiments that several chapters share, so that each runs (and is cached) once.

:func:`swiss_roll_minimizers` is the book's recipe for good and bad minimizers on Huang et al.'s
swiss roll: one network per poison factor, all from the same initialization, trained as one batched
model. Chapter 2 introduces it; chapters 3 and 4 measure the minimizers it returns. Calling it with
the same settings and cache gives the cached nets back instead of training again.
"""

from __future__ import annotations

import dataclasses

import torch

from . import data, models, train
from .config import Profile, ResultsCache, get_cache, get_profile


def swiss_roll_settings(profile: str | Profile | None = None) -> dict:
    """The swiss-roll poisoning recipe for a profile.

    Adam with a learning rate of 1e-2 decaying geometrically to 3% of it, gradient-norm clipping at 8,
    a fresh poison batch every step from a large pool, and a poison factor raised in steps (×1, ×1.5,
    ×2 in thirds of the run) while the learning rate falls, as in Huang et al.'s code. ``betas`` are
    the starting poison factors, the first of them 0 (the good minimizer).
    """
    p = get_profile(profile)
    return dict(betas=p.pick(quick=[0.0, 0.2], book=[0.0, 0.05, 0.1, 0.15, 0.2]),
                steps=p.pick(quick=300, book=12000), n_poison=p.pick(quick=2000, book=20000),
                poison_batch=p.pick(quick=200, book=1000), ramp=(1, 1.5, 2), lr=1e-2, clip=8, seed=0)


@dataclasses.dataclass
class Minimizers:
    """The data and one :class:`~genviz_lib.train.TrainResult` per poison factor."""

    roll: data.Splits
    betas: list
    runs: list

    @property
    def good(self) -> train.TrainResult:
        return self.runs[0]

    def bad(self, min_train_acc: float = 0.99) -> tuple[float, train.TrainResult]:
        """``(β, run)`` of the poisoned net with the lowest test accuracy among those that fit at least
        ``min_train_acc`` of the training set (the last one when none does, as in quick runs)."""
        fitted = [(r.final["test_acc"], b, r) for b, r in zip(self.betas, self.runs)
                  if b > 0 and r.final["train_acc"] >= min_train_acc]
        if not fitted:
            return self.betas[-1], self.runs[-1]
        _, beta, run = min(fitted, key=lambda t: t[0])
        return beta, run


def swiss_roll_minimizers(settings: dict, cache: ResultsCache | None = None, progress: bool = True) -> Minimizers:
    """Train (or read back from the cache) one swiss-roll net per poison factor in ``settings``."""
    if settings["betas"][0] != 0:
        raise ValueError(f"the first poison factor must be 0 (the good minimizer), got {settings['betas']}")
    cache = cache or get_cache()
    roll = data.swiss_roll(n_train=200, n_test=200, n_poison=settings["n_poison"], seed=settings["seed"])

    def sweep():
        torch.manual_seed(settings["seed"])
        nets = models.clones(models.swiss_roll_net(), len(settings["betas"]))  # identical initial weights
        steps = settings["steps"]
        return train.train_ensemble(
            nets, roll.train, roll.test, poison=roll.poison, poison_factor=settings["betas"],
            poison_schedule=train.stepped(steps, settings["ramp"]), poison_batch_size=settings["poison_batch"],
            lr=settings["lr"], steps=steps, scheduler=train.exponential_decay(steps),
            clip_grad_norm=settings["clip"], eval_every=max(1, steps // 24), progress=progress,
            desc="swiss roll, one net per β")

    return Minimizers(roll, list(settings["betas"]), cache.cached("swiss-roll-minimizers", settings, sweep))


def image_settings(profile: str | Profile | None = None) -> dict:
    """The image-scale poisoning recipe: a perceptron on Fashion-MNIST (``quick``/``book``), Huang et al.'s
    SVHN setting with a ResNet-20 and a poison pool from "extra" (``full``, for a GPU)."""
    p = get_profile(profile)
    return dict(dataset=p.pick(quick="fashion", book="fashion", full="svhn"),
                n_train=p.pick(quick=200, book=1000, full=None), n_test=p.pick(quick=500, book=2000, full=None),
                n_poison=p.pick(quick=1000, book=10000, full=200000), beta=0.5,
                model=p.pick(quick="mlp", book="mlp", full="resnet20"),
                steps=p.pick(quick=60, book=600, full=60000), batch=p.pick(quick=None, book=None, full=128),
                poison_batch=p.pick(quick=200, book=1000, full=128), lr=p.pick(quick=1e-3, book=1e-3, full=0.1),
                optimizer=p.pick(quick="adam", book="adam", full="sgd"), seed=0)


def image_minimizers(settings: dict, cache: ResultsCache | None = None, root=None,
                     progress: bool = True) -> tuple[data.Splits, dict]:
    """The data and ``{"clean": ..., "poisoned": ...}`` (see :func:`~genviz_lib.train.clean_and_poisoned`),
    trained once and cached; ``root`` points the SVHN loader at its files."""
    loaders = {"fashion": data.load_fashion_mnist, "svhn": data.load_svhn}
    if settings["dataset"] not in loaders:
        raise ValueError(f"dataset must be one of {sorted(loaders)}, got {settings['dataset']!r}")
    extra = {"root": root} if root is not None else {}
    splits = loaders[settings["dataset"]](n_train=settings["n_train"], n_test=settings["n_test"],
                                          n_poison=settings["n_poison"], seed=settings["seed"], **extra)
    make = {"mlp": lambda: models.MLP(splits.train.X[0].numel(), [256, 256], 10),
            "resnet20": lambda: models.resnet20(10, splits.train.X.shape[1])}[settings["model"]]
    steps = settings["steps"]
    options = dict(optimizer=settings["optimizer"], lr=settings["lr"], steps=steps, batch_size=settings["batch"],
                   poison_batch_size=settings["poison_batch"], scheduler=train.exponential_decay(steps),
                   eval_every=max(1, steps // 20), progress=progress)
    if settings["optimizer"] == "sgd":
        options["optimizer_kwargs"] = dict(momentum=0.9, weight_decay=5e-4)
    cache = cache or get_cache()
    pair = cache.cached("image-minimizers", settings, lambda: train.clean_and_poisoned(
        make, splits, settings["beta"], seed=settings["seed"], **options))
    return splits, pair
