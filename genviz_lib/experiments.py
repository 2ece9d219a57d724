"""Experiments that several chapters share, so that each runs (and is cached) once.

:func:`swiss_roll_minimizers` is the book's recipe for good and bad minimizers on Huang et al.'s
swiss roll: one network per poison factor, all from the same initialization, trained as one batched
model. Chapter 2 introduces it; chapters 3 and 4 measure the minimizers it returns. Calling it with
the same settings and cache gives the cached nets back instead of training again.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from . import curvature, data, landscape, models, train, volume
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
    roll = _swiss_roll(settings)

    def sweep():
        torch.manual_seed(settings["seed"])
        nets = models.clones(models.swiss_roll_net(), len(settings["betas"]))  # identical initial weights
        return _poisoned_swiss_roll(nets, roll, settings["betas"], settings, progress, "swiss roll, one net per β")

    return Minimizers(roll, list(settings["betas"]), cache.cached("swiss-roll-minimizers", settings, sweep))


def _swiss_roll(settings: dict) -> data.Splits:
    """The swiss roll of Huang et al. (200 train, 200 test) with the poison pool the settings ask for."""
    return data.swiss_roll(n_train=200, n_test=200, n_poison=settings["n_poison"], seed=settings["seed"])


def _poisoned_swiss_roll(nets, roll: data.Splits, betas, settings: dict, progress: bool, desc: str) -> list:
    """The recipe of :func:`swiss_roll_settings` applied to ``nets`` (one poison factor each) as one ensemble."""
    steps = settings["steps"]
    return train.train_ensemble(
        nets, roll.train, roll.test, poison=roll.poison, poison_factor=list(betas),
        poison_schedule=train.stepped(steps, settings["ramp"]), poison_batch_size=settings["poison_batch"],
        lr=settings["lr"], steps=steps, scheduler=train.exponential_decay(steps),
        clip_grad_norm=settings["clip"], eval_every=max(1, steps // 24), progress=progress, desc=desc)


def poison_sweep_settings(profile: str | Profile | None = None) -> dict:
    """Huang et al.'s Fig. 5 on the swiss roll: many poison factors, several seeds each.

    The recipe of :func:`swiss_roll_settings`, shortened for the ``book`` profile (3,000 steps, poison
    batches of 400) so that 45 nets train in about a minute; ``full`` runs the long recipe with the paper's
    ten seeds. The poison factors are spaced roughly logarithmically: the clean training loss a poisoned
    net can reach grows with β, and only the small factors leave it below the lowest cutoff (0.01).
    """
    p = get_profile(profile)
    return dict(betas=p.pick(quick=[0.0, 0.01, 0.2], book=[0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]),
                seeds=p.pick(quick=2, book=5, full=10), steps=p.pick(quick=300, book=3000, full=12000),
                n_poison=p.pick(quick=2000, book=20000), poison_batch=p.pick(quick=200, book=400, full=1000),
                ramp=(1, 1.5, 2), lr=1e-2, clip=8, seed=0)


@dataclasses.dataclass
class Sweep:
    """Nets trained by :func:`poison_sweep`: ``runs[s][b]`` is seed ``s`` at poison factor ``betas[b]``."""

    roll: data.Splits
    betas: list
    runs: list

    def records(self) -> list[dict]:
        """One row per net: ``beta``, ``seed``, final ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss``
        and ``gap`` (train minus test accuracy)."""
        rows = []
        for s, per_seed in enumerate(self.runs):
            for beta, run in zip(self.betas, per_seed):
                f = run.final
                rows.append(dict(beta=beta, seed=s, train_acc=f["train_acc"], test_acc=f["test_acc"],
                                 train_loss=f["train_loss"], test_loss=f["test_loss"],
                                 gap=f["train_acc"] - f["test_acc"]))
        return rows


def poison_sweep(settings: dict, cache: ResultsCache | None = None, progress: bool = True) -> Sweep:
    """Train (or read back) one swiss-roll net per (seed, poison factor), all as one ensemble.

    Seed ``s`` draws the initial weights under ``torch.manual_seed(settings["seed"] + s)``; every factor of a
    seed starts from those weights, so within a seed only β differs.
    """
    if settings["seeds"] < 1 or not settings["betas"]:
        raise ValueError(f"need at least one seed and one poison factor, got {settings['seeds']} and {settings['betas']}")
    cache = cache or get_cache()
    roll = _swiss_roll(settings)
    k = len(settings["betas"])

    def sweep():
        nets = []
        for s in range(settings["seeds"]):
            torch.manual_seed(settings["seed"] + s)
            nets += models.clones(models.swiss_roll_net(), k)
        runs = _poisoned_swiss_roll(nets, roll, list(settings["betas"]) * settings["seeds"], settings, progress,
                                    f"swiss roll, {settings['seeds']} seeds × {k} poison factors")
        return [runs[s * k:(s + 1) * k] for s in range(settings["seeds"])]

    return Sweep(roll, list(settings["betas"]), cache.cached("swiss-roll-poison-sweep", settings, sweep))


def rings_settings(profile: str | Profile | None = None) -> dict:
    """Huang et al.'s Fig. 8: the rings at several gaps, a few seeds each (Adam 1e-3, full batch)."""
    p = get_profile(profile)
    return dict(gaps=p.pick(quick=[0.001, 0.3], book=[0.001, 0.003, 0.01, 0.1, 0.3]),
                seeds=2, steps=p.pick(quick=300, book=1500, full=10000), lr=1e-3, seed=0)


def rings_runs(settings: dict, cache: ResultsCache | None = None, progress: bool = True) -> dict:
    """``{gap: (data, [one TrainResult per seed])}``: :func:`~genviz_lib.models.rings_net` trained to fit
    :func:`~genviz_lib.data.concentric_rings` at each gap, the seeds of one gap as one ensemble."""
    cache = cache or get_cache()
    rings = {g: data.concentric_rings(gap=g) for g in settings["gaps"]}  # bad gaps fail here, before training

    def fit(gap):
        nets = []
        for s in range(settings["seeds"]):
            torch.manual_seed(settings["seed"] + s)
            nets.append(models.rings_net())
        return train.train_ensemble(nets, rings[gap], None, lr=settings["lr"], steps=settings["steps"],
                                    eval_every=max(1, settings["steps"] // 10), progress=progress,
                                    desc=f"rings, gap {gap:g}")

    configs = [dict(settings, gaps=None, gap=g) for g in settings["gaps"]]
    runs = cache.map("rings", configs, lambda c: fit(c["gap"]))
    return {g: (rings[g], r) for g, r in zip(settings["gaps"], runs)}


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


def basin_summary(model: torch.nn.Module, fit: data.Data, cutoffs, directions: int, rtol: float = 1e-2,
                  seed: int = 0, eigenvalues: int = 0, frobenius_samples: int = 0, r_min: float | None = None) -> dict:
    """What chapter 4 measures of one minimizer, on its training loss ``fit``.

    ``loss``: the training loss at the minimizer. ``cutoffs``: those of the given cutoffs above it (a cutoff at
    or below the minimizer's own loss has no basin). ``radii`` ``[c, directions]``: basin radii along random unit
    directions (seeded by ``seed``, the same for every model of one size). ``log10_volume``: one per cutoff kept.
    With ``eigenvalues = k > 0``: the top ``k`` Hessian eigenvalues (Lanczos) and ``V_k`` (Wu et al. eq. 13, or
    ``nan`` when one of them is not positive); with ``frobenius_samples > 0``: ``frobenius`` (eq. 14, ``‖H‖_F²``).
    ``r_min`` is where bracketing starts (see :func:`~genviz_lib.volume.basin_radius`); starting near the expected
    radius saves evaluations on large nets.
    """
    if directions < 1:
        raise ValueError(f"need at least one direction, got {directions}")
    f, theta = landscape.objective(model, fit.X, fit.y), landscape.flatten(model).detach()
    n = theta.numel()
    with torch.no_grad():
        loss = float(f(theta[None])[0])
    kept = [float(c) for c in cutoffs if c > loss]
    out = dict(n=n, loss=loss, cutoffs=kept, radii=torch.empty(0, directions, dtype=torch.float64),
               log10_volume=[], at_cap=[])
    if kept:
        phis = landscape.random_directions(n, directions, torch.Generator().manual_seed(seed)).to(theta)
        r = volume.basin_radius(f, theta, phis, kept, rtol=rtol, r_min=r_min)
        out.update(radii=r.radii, at_cap=r.n_at_cap.tolist(),
                   log10_volume=(volume.log_volume(r.radii, n) / math.log(10)).tolist())
    if eigenvalues:
        top = curvature.top_eigenvalues(f, theta, k=eigenvalues, tol=1e-2)
        out["eigenvalues"] = top
        out["V_k"] = curvature.log_volume_proxy(top) if (top > 0).all() else math.nan
    if frobenius_samples:
        out["frobenius"] = curvature.frobenius_estimate(f, theta, samples=frobenius_samples,
                                                        generator=torch.Generator().manual_seed(seed))[0]
    return out
