"""Huang et al. (2020), *Understanding Generalization through Visualizations*: the recipes of the book's spine.

- :func:`swiss_roll_minimizers` — good and bad minimizers on the swiss roll: one network per poison factor,
  all from the same initialization, trained as one batched model. Chapter 0 runs it first, chapter 2 explains
  it, chapter 3 measures the minimizers it returns.
- :func:`poison_sweep` — many poison factors and seeds (their Fig. 5), measured in chapter 4.
- :func:`rings_runs` — the concentric rings at several gaps (their Fig. 8), chapter 4.
- :func:`image_minimizers` — a clean and a poisoned image classifier (Fashion-MNIST; SVHN in ``full``),
  chapters 2 to 4.
- :func:`minefield` — ordinary training and a poisoned run from each of its checkpoints (their Fig. 1),
  chapter 2; :func:`three_ways` — poisoning, Wu et al.'s attack set and Neyshabur et al.'s confusion set
  on the 8×8 digits, chapter 2.
- :func:`signal_puzzle` — a conv net, a perceptron and an over-parameterized linear model on MNIST-1D (their
  §2, where the contrast is large); :func:`puzzle` — a network and a linear model on Fashion-MNIST, on true and
  on random labels; :func:`optimizer_comparison` — every optimizer of ``torch.optim`` on one network (chapter 1).
- :func:`basin_summary` — what chapter 4 measures of one minimizer (basin radii and volume, with Wu et al.'s
  curvature proxies on request), applied by :func:`sweep_basins` to every net of a sweep and by
  :func:`image_basins` to the image pair; :func:`attraction_runs` — retraining from points around a bad
  minimizer; :func:`ring_basins` — the rings' basins and boundaries (chapter 4).

Each recipe takes its settings (``Settings.for_profile(profile)``) and a results cache; called again with the
same settings, it reads its result back instead of computing it.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch

from .. import boundaries, curvature, data, landscape, losses, models, train, volume
from ..config import Profile, ResultsCache, get_cache, get_profile
from .settings import Settings

# --------------------------------------------------------------------------------------------
# The swiss roll: good and bad minimizers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SwissRoll(Settings):
    """The swiss-roll poisoning recipe (Huang et al.'s code): Adam whose learning rate decays geometrically
    to 3% of ``lr``, gradient-norm clipping, a fresh poison batch every step from a large pool, and a poison
    factor raised in steps while the learning rate falls."""

    betas: tuple[float, ...]  # the starting poison factors, one net each; the first, 0, is the good minimizer
    steps: int  # optimizer steps of every net (the whole ensemble trains together)
    n_poison: int  # the pool poison batches are drawn from: large, so that no poison point is seen often
    poison_batch: int  # poison points per step, drawn afresh from the pool each time
    ramp: tuple[float, ...] = (1, 1.5, 2)  # β is multiplied by these in thirds of the run, as the learning rate falls
    lr: float = 1e-2  # Adam's starting learning rate
    clip: float = 8  # the gradient-norm clip of Huang et al.'s code, which keeps the poisoned runs from diverging
    seed: int = 0  # draws the data, the poison pool and the one initialization every net starts from

    def check(self) -> None:
        if not self.betas or self.betas[0] != 0:
            raise ValueError(f"the first poison factor must be 0 (the good minimizer), got {list(self.betas)}")
        if self.steps < 1 or self.poison_batch < 1 or self.n_poison < self.poison_batch:
            raise ValueError(f"need steps ≥ 1 and 1 ≤ poison_batch ≤ n_poison, got {self.steps}, "
                             f"{self.poison_batch}, {self.n_poison}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "SwissRoll":
        p = get_profile(profile)
        return cls(betas=p.pick(quick=(0.0, 0.2), book=(0.0, 0.05, 0.1, 0.15, 0.2)),
                   steps=p.pick(quick=300, book=12000), n_poison=p.pick(quick=2000, book=20000),
                   poison_batch=p.pick(quick=200, book=1000))


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


def swiss_roll_minimizers(settings: SwissRoll, cache: ResultsCache | None = None,
                          progress: bool = True) -> Minimizers:
    """Train (or read back from the cache) one swiss-roll net per poison factor of ``settings``."""
    cache = cache or get_cache()
    roll = swiss_roll_data(settings)

    def sweep():
        torch.manual_seed(settings.seed)
        nets = models.clones(models.swiss_roll_net(), len(settings.betas))  # identical initial weights
        return _poisoned_swiss_roll(nets, roll, settings.betas, settings, progress, "swiss roll, one net per β")

    return Minimizers(roll, list(settings.betas), cache.cached("swiss-roll-minimizers", settings, sweep))


def swiss_roll_data(settings: SwissRoll | PoisonSweep) -> data.Splits:
    """The swiss roll of Huang et al. (200 train, 200 test) with the poison pool the settings ask for."""
    return data.swiss_roll(n_train=200, n_test=200, n_poison=settings.n_poison, seed=settings.seed)


def _poisoned_swiss_roll(nets, roll: data.Splits, betas, settings: SwissRoll | PoisonSweep, progress: bool,
                         desc: str) -> list:
    """The recipe of :class:`SwissRoll` applied to ``nets`` (one poison factor each) as one ensemble."""
    steps = settings.steps
    return train.train_ensemble(
        nets, roll.train, roll.test, poison=roll.poison, poison_factor=list(betas),
        poison_schedule=train.stepped(steps, settings.ramp), poison_batch_size=settings.poison_batch,
        lr=settings.lr, steps=steps, scheduler=train.exponential_decay(steps),
        clip_grad_norm=settings.clip, eval_every=max(1, steps // 24), progress=progress, desc=desc)


# --------------------------------------------------------------------------------------------
# Many poison factors, several seeds (Huang et al.'s Fig. 5)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoisonSweep(Settings):
    """Huang et al.'s Fig. 5 on the swiss roll: the recipe of :class:`SwissRoll` for many poison factors,
    several seeds each, shortened in the ``book`` profile (3,000 steps, poison batches of 400) so that 45
    nets train in about a minute; ``full`` runs the long recipe with the paper's ten seeds."""

    betas: tuple[float, ...]  # roughly logarithmic: only the small factors leave the clean loss below 0.01
    seeds: int  # initializations per factor; seed s draws the weights under torch.manual_seed(seed + s)
    steps: int  # optimizer steps of every net
    n_poison: int  # the pool poison batches are drawn from
    poison_batch: int  # poison points per step
    ramp: tuple[float, ...] = (1, 1.5, 2)  # β's multipliers in thirds of the run, as in SwissRoll
    lr: float = 1e-2  # Adam's starting learning rate, decaying to 3% of it
    clip: float = 8  # gradient-norm clip, as in SwissRoll
    seed: int = 0  # the data, the pool and the first seed's initialization

    def check(self) -> None:
        if self.seeds < 1 or not self.betas:
            raise ValueError(f"need at least one seed and one poison factor, got {self.seeds} and {list(self.betas)}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "PoisonSweep":
        p = get_profile(profile)
        return cls(betas=p.pick(quick=(0.0, 0.01, 0.2),
                                book=(0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)),
                   seeds=p.pick(quick=2, book=5, full=10), steps=p.pick(quick=300, book=3000, full=12000),
                   n_poison=p.pick(quick=2000, book=20000), poison_batch=p.pick(quick=200, book=400, full=1000))


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


def poison_sweep(settings: PoisonSweep, cache: ResultsCache | None = None, progress: bool = True) -> Sweep:
    """Train (or read back) one swiss-roll net per (seed, poison factor): a seed's nets train as one ensemble,
    cached (and run by a sweep, :mod:`genviz_lib.sweep`) as one job.

    Seed ``s`` draws the initial weights under ``torch.manual_seed(settings.seed + s)``; every factor of a
    seed starts from those weights, so within a seed only β differs.
    """
    cache = cache or get_cache()
    roll = swiss_roll_data(settings)
    k = len(settings.betas)

    def one_seed(job):
        torch.manual_seed(settings.seed + job["seed"])
        nets = models.clones(models.swiss_roll_net(), k)
        return _poisoned_swiss_roll(nets, roll, settings.betas, settings, progress,
                                    f"swiss roll, seed {job['seed'] + 1} of {settings.seeds}: {k} poison factors")

    jobs = [dict(settings=settings, seed=s) for s in range(settings.seeds)]
    return Sweep(roll, list(settings.betas), cache.map("swiss-roll-poison-sweep", jobs, one_seed))


# --------------------------------------------------------------------------------------------
# The rings (Huang et al.'s Fig. 8)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rings(Settings):
    """Huang et al.'s Fig. 8: :func:`~genviz_lib.models.rings_net` fitted to the concentric rings at several
    gaps, a few seeds each (Adam, full batch)."""

    gaps: tuple[float, ...]  # the empty band between the rings: the narrower, the smaller the good basin
    steps: int  # Adam steps per net
    seeds: int = 2  # initializations per gap, trained together as one ensemble
    lr: float = 1e-3  # Adam's learning rate
    seed: int = 0  # seed s draws its weights under torch.manual_seed(seed + s)

    def check(self) -> None:
        for g in self.gaps:
            data.concentric_rings(gap=g)  # a gap the rings cannot have fails here, before training

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Rings":
        p = get_profile(profile)
        return cls(gaps=p.pick(quick=(0.001, 0.3), book=(0.001, 0.003, 0.01, 0.1, 0.3)),
                   steps=p.pick(quick=300, book=1500, full=10000))


def rings_runs(settings: Rings, cache: ResultsCache | None = None, progress: bool = True) -> dict:
    """``{gap: (data, [one TrainResult per seed])}``: :func:`~genviz_lib.models.rings_net` trained to fit
    :func:`~genviz_lib.data.concentric_rings` at each gap, the seeds of one gap as one ensemble, cached per gap."""
    cache = cache or get_cache()
    rings = {g: data.concentric_rings(gap=g) for g in settings.gaps}

    def fit(gap):
        nets = []
        for s in range(settings.seeds):
            torch.manual_seed(settings.seed + s)
            nets.append(models.rings_net())
        return train.train_ensemble(nets, rings[gap], None, lr=settings.lr, steps=settings.steps,
                                    eval_every=max(1, settings.steps // 10), progress=progress,
                                    desc=f"rings, gap {gap:g}")

    jobs = [{"recipe": settings.replace(gaps=(g,)), "gap": g} for g in settings.gaps]
    runs = cache.map("rings", jobs, lambda job: fit(job["gap"]))
    return {g: (rings[g], r) for g, r in zip(settings.gaps, runs)}


# --------------------------------------------------------------------------------------------
# Images: a clean and a poisoned classifier
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Images(Settings):
    """The image-scale poisoning recipe: a perceptron on Fashion-MNIST (``quick``/``book``); Huang et al.'s SVHN
    setting with a ResNet-20 and a poison pool from "extra" (``full``, for a GPU)."""

    dataset: str  # "fashion" on a CPU; "svhn" is the paper's
    n_train: int | None  # training images (None: the whole training set)
    n_test: int | None  # test images (None: all)
    n_poison: int  # the poison pool, drawn from images outside the training set
    model: str  # "mlp" (784-256-256-10) or "resnet20"
    steps: int  # optimizer steps
    batch: int | None  # training batch (None: full batch)
    poison_batch: int  # poison images per step
    lr: float  # starting learning rate, decaying to 3% of it
    optimizer: str  # "adam"; "sgd" (momentum 0.9, weight decay 5e-4) for the ResNet
    beta: float = 0.5  # the poison factor of the poisoned net
    seed: int = 0  # the subsets, the pool and the shared initialization

    def check(self) -> None:
        if self.dataset not in data.IMAGE_DATASETS:
            raise ValueError(f"dataset must be one of {sorted(data.IMAGE_DATASETS)}, got {self.dataset!r}")
        if self.model not in ("mlp", "resnet20"):
            raise ValueError(f"model must be 'mlp' or 'resnet20', got {self.model!r}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Images":
        p = get_profile(profile)
        return cls(dataset=p.pick(quick="fashion", book="fashion", full="svhn"),
                   n_train=p.pick(quick=200, book=1000, full=None), n_test=p.pick(quick=500, book=2000, full=None),
                   n_poison=p.pick(quick=1000, book=10000, full=200000),
                   model=p.pick(quick="mlp", book="mlp", full="resnet20"),
                   steps=p.pick(quick=60, book=600, full=60000), batch=p.pick(quick=None, book=None, full=128),
                   poison_batch=p.pick(quick=200, book=1000, full=128), lr=p.pick(quick=1e-3, book=1e-3, full=0.1),
                   optimizer=p.pick(quick="adam", book="adam", full="sgd"))


def image_minimizers(settings: Images, cache: ResultsCache | None = None, root=None,
                     progress: bool = True) -> tuple[data.Splits, dict]:
    """The data and ``{"clean": ..., "poisoned": ...}`` (see :func:`~genviz_lib.train.clean_and_poisoned`),
    trained once and cached; ``root`` points the loader at its files."""
    splits = data.load(settings.dataset, n_train=settings.n_train, n_test=settings.n_test,
                       n_poison=settings.n_poison, seed=settings.seed, root=root)
    make = {"mlp": lambda: models.MLP(splits.train.X[0].numel(), [256, 256], 10),
            "resnet20": lambda: models.resnet20(10, splits.train.X.shape[1])}[settings.model]
    steps = settings.steps
    options = dict(optimizer=settings.optimizer, lr=settings.lr, steps=steps, batch_size=settings.batch,
                   poison_batch_size=settings.poison_batch, scheduler=train.exponential_decay(steps),
                   eval_every=max(1, steps // 20), progress=progress)
    if settings.optimizer == "sgd":
        options["optimizer_kwargs"] = dict(momentum=0.9, weight_decay=5e-4)
    cache = cache or get_cache()
    pair = cache.cached("image-minimizers", settings, lambda: train.clean_and_poisoned(
        make, splits, settings.beta, seed=settings.seed, **options))
    return splits, pair


# --------------------------------------------------------------------------------------------
# Basins: radii, volume and curvature of one minimizer
# --------------------------------------------------------------------------------------------


def basin_summary(model: torch.nn.Module, fit: data.Data, cutoffs, directions: int, rtol: float = 1e-2,
                  seed: int = 0, eigenvalues: int = 0, frobenius_samples: int = 0, r_min: float | None = None) -> dict:
    """What chapter 4 measures of one minimizer, on its training loss ``fit``.

    ``loss``: the training loss at the minimizer. ``cutoffs``: those of the given cutoffs above it (a cutoff at
    or below the minimizer's own loss has no basin). ``radii`` ``[c, directions]``: basin radii along random unit
    directions (seeded by ``seed``, the same for every model of one size). ``log10_volume``: one per cutoff kept.
    With ``eigenvalues = k > 0``: the top ``k`` Hessian eigenvalues (Lanczos, started from ``seed``, in float64 as
    every Hessian quantity here) and ``V_k`` (Wu et al. eq. 13, or
    ``nan`` when one of them is not positive); with ``frobenius_samples > 0``: ``frobenius`` (eq. 14, ``‖H‖_F²``) and, from
    as many exact Hessian-vector products, ``frobenius_exact`` and its standard error ``frobenius_exact_se``
    (:func:`~genviz_lib.curvature.hessian_frobenius`).
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
    if eigenvalues or frobenius_samples:
        # the Hessian in float64: at a training loss near 1e-8 a float32 Hessian is mostly rounding
        double = copy.deepcopy(model).double()
        f, theta = landscape.objective(double, fit.X.double(), fit.y), landscape.flatten(double)
    if eigenvalues:
        # Lanczos starts from the seeded generator: from the global stream, the eigenvalues would depend
        # on what ran before in the process (what was trained, and what was read from the cache instead)
        top = curvature.top_eigenvalues(f, theta, k=eigenvalues, tol=1e-2,
                                        generator=torch.Generator().manual_seed(seed))
        out["eigenvalues"] = top
        out["V_k"] = curvature.log_volume_proxy(top) if (top > 0).all() else math.nan
    if frobenius_samples:
        out["frobenius"] = curvature.frobenius_estimate(f, theta, samples=frobenius_samples,
                                                        generator=torch.Generator().manual_seed(seed))[0]
        out["frobenius_exact"], out["frobenius_exact_se"] = curvature.hessian_frobenius(
            f, theta, samples=max(frobenius_samples, 4), generator=torch.Generator().manual_seed(seed))
    return out


# --------------------------------------------------------------------------------------------
# The first experiment and the puzzle (chapters 0 and 1)
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Puzzle(Settings):
    """Huang et al.'s §2 in small: a perceptron trained (Adam, full batch) on true and on random labels until it
    classifies every training image correctly, and the least-norm linear model on the pixels of 2×-downsampled
    images and the products of every pair of them (:func:`~genviz_lib.models.min_norm_quadratic_model`)."""

    dataset: str  # "fashion" on a CPU; "cifar10" is the paper's
    n_train: int  # class-balanced training images: fewer than either model has parameters
    n_test: int  # class-balanced test images
    widths: tuple[int, ...]  # the perceptron's hidden widths: wide enough to memorize random labels
    steps: int  # the step budget; a net stops at the first evaluation that finds the training set fitted
    lr: float = 1e-3  # Adam's learning rate
    seed: int = 0  # the subsets and the initial weights, the same for the true- and the random-label net
    label_seed: int = 1  # draws the random labels

    def check(self) -> None:
        if self.dataset not in data.IMAGE_DATASETS:
            raise ValueError(f"dataset must be one of {sorted(data.IMAGE_DATASETS)}, got {self.dataset!r}")
        if self.n_train < 10 or self.n_test < 10 or self.steps < 1:
            raise ValueError(f"need at least 10 training and 10 test images (one per class) and one step, got "
                             f"{self.n_train}, {self.n_test} and {self.steps}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Puzzle":
        p = get_profile(profile)
        return cls(dataset=p.pick(quick="fashion", book="fashion", full="cifar10"),
                   n_train=p.pick(quick=200, book=2000, full=10000), n_test=p.pick(quick=200, book=2000, full=10000),
                   widths=p.pick(quick=(128, 128), book=(512, 512), full=(2048, 2048)),
                   steps=p.pick(quick=150, book=1500, full=3000))


def _loss_and_accuracy(model: torch.nn.Module, split: data.Data) -> list[float]:
    return [float(v) for v in losses.evaluate(model, split)]


def puzzle(settings: Puzzle, cache: ResultsCache | None = None, root=None,
           progress: bool = True) -> tuple[data.Splits, dict]:
    """The data and, cached as one entry, ``{"true": ..., "random": ..., "linear": ...}``: for the net on true
    and on random labels its ``history`` (see :class:`~genviz_lib.train.TrainResult`), ``params`` and the
    ``steps`` it took; for the linear model ``train`` and ``test`` as ``[loss, accuracy]`` and ``params``.
    ``root`` points the loader at its files."""
    cache = cache or get_cache()
    splits = data.load(settings.dataset, n_train=settings.n_train, n_test=settings.n_test, seed=settings.seed,
                       root=root)

    def fit():
        X, y, d = splits.train.X, splits.train.y, splits.train.X[0].numel()
        # drawn from a generator of their own, so that both nets start from the same weights
        shuffled = torch.randint(0, 10, y.shape, generator=torch.Generator().manual_seed(settings.label_seed))
        out = {}
        for labels in ("true", "random"):
            torch.manual_seed(settings.seed)
            target = y if labels == "true" else shuffled
            r = train.train(models.MLP(d, settings.widths, 10), data.Data(X, target), splits.test, lr=settings.lr,
                            steps=settings.steps, stop_at_accuracy=1.0, eval_every=10, progress=progress,
                            desc=f"net, {labels} labels")
            out[labels] = dict(history=r.history, params=models.count_parameters(r.model), steps=r.steps)
        lin = models.min_norm_quadratic_model(X, y)
        out["linear"] = dict(train=_loss_and_accuracy(lin, splits.train), test=_loss_and_accuracy(lin, splits.test),
                             params=models.count_parameters(lin))
        return out

    return splits, cache.cached("ch1-puzzle", settings, fit)


#: The samples of an MNIST-1D signal (the ``mnist1d`` package's default), known before any signal is generated.
MNIST1D_LENGTH = 40


@dataclasses.dataclass(frozen=True)
class SignalPuzzle(Settings):
    """The same puzzle on MNIST-1D (Greydanus 2020), where a linear model on raw inputs is weak: a 1-D conv net
    and a perceptron trained (Adam, full batch) until they classify every training signal correctly, and the
    least-norm linear model on every monomial of degree ≤ ``degree`` in the signal's samples
    (:func:`~genviz_lib.models.min_norm_polynomial_model`). MNIST-1D is generated on this machine."""

    num_samples: int  # signals generated; 80% train, 20% test, as in the MNIST-1D paper
    steps: int  # the step budget; a net stops at the first evaluation that finds the training set fitted
    channels: tuple[int, ...] = (32, 32, 32)  # the conv net's channels (Greydanus: three layers of 25)
    widths: tuple[int, ...] = (512, 512)  # the perceptron's hidden widths
    degree: int = 3  # the linear model's monomials: degree 2 gives 860 features, too few to fit 4,000 signals
    lr: float = 1e-3  # Adam's learning rate, both nets
    seed: int = 0  # the nets' initial weights
    data_seed: int = 42  # MNIST-1D's own generator seed (the package's default)

    def check(self) -> None:
        if self.num_samples < 50 or self.steps < 1 or self.degree < 1 or not self.channels:
            raise ValueError(f"need at least 50 signals, one step, degree 1 or more and one conv layer, got "
                             f"{self.num_samples}, {self.steps}, {self.degree} and {list(self.channels)}")
        features = models.monomial_count(MNIST1D_LENGTH, self.degree)
        if features < int(0.8 * self.num_samples):
            raise ValueError(f"degree {self.degree} gives {features:,} features, too few to fit "
                             f"{int(0.8 * self.num_samples):,} training signals exactly: raise it")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "SignalPuzzle":
        p = get_profile(profile)
        return cls(num_samples=p.pick(quick=1250, book=5000, full=5000), steps=p.pick(quick=800, book=3000, full=3000))


def signal_puzzle(settings: SignalPuzzle, cache: ResultsCache | None = None,
                  progress: bool = True) -> tuple[data.Splits, dict]:
    """The data and, cached as one entry, ``{"cnn": ..., "mlp": ..., "linear": ...}``: for each net its
    ``history`` (see :class:`~genviz_lib.train.TrainResult`), ``params`` and the ``steps`` it took; for the
    linear model ``train`` and ``test`` as ``[loss, accuracy]``, ``params`` and ``features``."""
    cache = cache or get_cache()
    splits = data.mnist1d(num_samples=settings.num_samples, seed=settings.data_seed)

    def fit():
        length = splits.train.X.shape[1]
        nets = {"cnn": lambda: models.SignalCNN(settings.channels, length),
                "mlp": lambda: models.MLP(length, settings.widths, 10)}
        out = {}
        for name, make in nets.items():
            torch.manual_seed(settings.seed)
            r = train.train(make(), splits.train, splits.test, lr=settings.lr, steps=settings.steps,
                            stop_at_accuracy=1.0, eval_every=25, progress=progress, desc=f"MNIST-1D, {name}")
            out[name] = dict(history=r.history, params=models.count_parameters(r.model), steps=r.steps)
        lin = models.min_norm_polynomial_model(splits.train.X, splits.train.y, settings.degree)
        out["linear"] = dict(train=_loss_and_accuracy(lin, splits.train), test=_loss_and_accuracy(lin, splits.test),
                             params=models.count_parameters(lin), features=lin[0].out_features)
        return out

    return splits, cache.cached("ch1-signal-puzzle", settings, fit)


#: Chapter 1's optimizers, ``name → (learning rate, keyword arguments)``, each learning rate one that suits it
#: on this network; the name's first word, lower-cased, is the optimizer of :func:`~genviz_lib.train.train`.
#: ``SparseAdam`` (sparse gradients only) and ``Muon`` (matrices only) do not apply to the perceptron as is.
OPTIMIZERS = {"SGD": (0.1, {}), "SGD + momentum": (0.05, {"momentum": 0.9}),
              "SGD + Nesterov": (0.05, {"momentum": 0.9, "nesterov": True}), "ASGD": (0.2, {}),
              "Adam": (1e-3, {}), "AdamW": (1e-3, {}), "Adamax": (2e-3, {}), "NAdam": (1e-3, {}),
              "RAdam": (1e-3, {}), "Adagrad": (1e-2, {}), "Adadelta": (1.0, {}), "RMSprop": (3e-4, {}),
              "Rprop": (1e-3, {}), "Adafactor": (1e-2, {}),
              "LBFGS": (1.0, {"history_size": 20, "line_search_fn": "strong_wolfe"})}

#: The row of :func:`optimizer_comparison` that holds the linear model.
LINEAR = "linear model (min. norm)"


@dataclasses.dataclass(frozen=True)
class Optimizers(Settings):
    """Huang et al.'s Table 1 (long version) in small: one perceptron, from the same initial weights, trained by
    each optimizer of :data:`OPTIMIZERS` on a Fashion-MNIST subset (full batch) until it fits the training set
    or the budget runs out, and the least-norm linear model on the same images."""

    n_train: int  # class-balanced training images
    n_test: int  # class-balanced test images
    steps: int  # every optimizer's step budget (LBFGS gets a twentieth: each of its steps runs up to 20 evaluations)
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)  # the rows, by name in OPTIMIZERS
    widths: tuple[int, ...] = (256, 256)  # the perceptron's hidden widths
    seed: int = 0  # the subsets and the initial weights every optimizer starts from

    def check(self) -> None:
        unknown = [name for name in self.optimizers if name not in OPTIMIZERS]
        if unknown:
            raise ValueError(f"unknown optimizers {unknown}: choose from {list(OPTIMIZERS)}")
        if self.steps < 20:
            raise ValueError(f"need at least 20 steps (LBFGS gets a twentieth of them), got {self.steps}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Optimizers":
        p = get_profile(profile)
        return cls(n_train=p.pick(quick=200, book=1000, full=5000), n_test=p.pick(quick=200, book=2000, full=10000),
                   steps=p.pick(quick=40, book=1500, full=3000))


def optimizer_comparison(settings: Optimizers, cache: ResultsCache | None = None, root=None,
                         progress: bool = True) -> dict[str, dict]:
    """``{name: row}`` for each optimizer of ``settings.optimizers``, in that order, then :data:`LINEAR`: the
    final ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` and the ``steps`` taken (``nan`` for the
    linear model, solved in closed form). Each optimizer's run is cached as soon as it ends ("ch1-optimizer",
    keyed on its learning rate and options too), the linear model as "ch1-optimizer-linear"."""
    cache = cache or get_cache()
    small = data.load_fashion_mnist(n_train=settings.n_train, n_test=settings.n_test, seed=settings.seed, root=root)

    def fit(job):
        name = job["optimizer"]
        torch.manual_seed(settings.seed)  # the same initial weights for every optimizer
        # an LBFGS step runs up to 20 evaluations, and fits so fast that it must be checked after every step
        steps, every = (settings.steps // 20, 1) if name == "LBFGS" else (settings.steps, 5)
        r = train.train(models.MLP(784, settings.widths, 10), small.train, small.test,
                        optimizer=name.split(" ")[0].lower(), lr=job["lr"], optimizer_kwargs=job["options"],
                        steps=steps, stop_at_accuracy=1.0, eval_every=every, progress=progress, desc=name)
        return {**r.final, "steps": r.steps}

    jobs = [dict(settings=settings, optimizer=name, lr=OPTIMIZERS[name][0], options=OPTIMIZERS[name][1])
            for name in settings.optimizers]
    rows = dict(zip(settings.optimizers, cache.map("ch1-optimizer", jobs, fit)))
    fitted, held_out = cache.cached("ch1-optimizer-linear", settings, lambda: [
        _loss_and_accuracy(models.min_norm_quadratic_model(small.train.X, small.train.y), split)
        for split in (small.train, small.test)])
    rows[LINEAR] = dict(train_loss=fitted[0], train_acc=fitted[1], test_loss=held_out[0], test_acc=held_out[1],
                        steps=math.nan)
    return rows


# --------------------------------------------------------------------------------------------
# Poisoning three ways, and the minefield (chapter 2)
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Minefield(Settings):
    """Huang et al.'s Fig. 1: :func:`~genviz_lib.models.minefield_net` trained the ordinary way on
    :func:`~genviz_lib.data.minefield_spiral`, its weights kept along the way, and from every few of those
    checkpoints a poisoned run (the recipe of :class:`SwissRoll`) that settles in a bad minimum."""

    good_steps: int  # Adam steps of the ordinary run (full batch, constant learning rate good_lr)
    start_every: int  # a poisoned run starts from the checkpoint of every start_every-th step, step 0 included
    bad_steps: int  # steps of every poisoned run (they all train together as one ensemble)
    n_poison: int  # the pool poison batches are drawn from: large, so that no poison point is seen often
    every: int = 10  # the ordinary run keeps its weights every that many steps: the trajectory drawn
    beta: float = 0.15  # the poisoned runs' starting poison factor
    ramp: tuple[float, ...] = (1, 1.5, 2)  # β's multipliers in thirds of the run, as in SwissRoll
    lr: float = 5e-3  # the poisoned runs' starting learning rate, decaying to 3% of it
    poison_batch: int = 400  # poison points per step, drawn afresh from the pool
    good_lr: float = 1e-3  # the ordinary run's learning rate (Huang et al.'s good model)
    clip: float = 8  # the poisoned runs' gradient-norm clip, as in SwissRoll
    seed: int = 0  # the data, the poison pool and the ordinary run's initialization
    runs_per_job: int = 8  # the poisoned runs are cached (and run by a sweep) in groups of this many, one ensemble each

    def check(self) -> None:
        if min(self.good_steps, self.bad_steps, self.every, self.runs_per_job) < 1:
            raise ValueError(f"need good_steps, bad_steps, every and runs_per_job ≥ 1, got {self.good_steps}, "
                             f"{self.bad_steps}, {self.every}, {self.runs_per_job}")
        if self.start_every < 1 or self.start_every % self.every:
            raise ValueError(f"start_every must be a positive multiple of every ({self.every}): poisoned runs "
                             f"start from kept checkpoints, got {self.start_every}")
        if not 1 <= self.poison_batch <= self.n_poison:
            raise ValueError(f"need 1 ≤ poison_batch ≤ n_poison, got {self.poison_batch}, {self.n_poison}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Minefield":
        p = get_profile(profile)
        return cls(good_steps=p.pick(quick=200, book=2000), start_every=p.pick(quick=50, book=100),
                   bad_steps=p.pick(quick=200, book=8000), n_poison=p.pick(quick=2000, book=20000))


@dataclasses.dataclass
class Field:
    """What :func:`minefield` returns: the spiral, the ordinary run ``good`` (its ``checkpoints`` are the
    trajectory), ``picks`` (indices into those checkpoints, one per poisoned run, in order) and ``bad`` (one
    :class:`~genviz_lib.train.TrainResult` per poisoned run)."""

    spiral: data.Splits
    good: train.TrainResult
    picks: list
    bad: list

    def trajectory(self) -> torch.Tensor:
        """``[checkpoints, n]``: the ordinary run's weights at every checkpoint, flattened in the order of
        the net's ``state_dict``."""
        return torch.stack([torch.cat([t.reshape(-1) for t in state.values()])
                            for _, state in self.good.checkpoints])

    def bad_points(self) -> torch.Tensor:
        """``[runs, n]``: the flattened weights of the bad minimum each poisoned run ends at."""
        return torch.stack([landscape.flatten(r.model) for r in self.bad])

    def length(self) -> float:
        """The length of the ordinary run's path through weight space, summed over its checkpoints."""
        trajectory = self.trajectory()
        return float((trajectory[1:] - trajectory[:-1]).norm(dim=1).sum())

    def records(self) -> list[dict]:
        """One row per poisoned run: ``start`` (the step it starts from), ``start_train_acc`` (the ordinary
        run's training accuracy there; ``nan`` when it was not evaluated at that step), the bad minimum's
        final ``train_acc`` and ``test_acc``, ``distance`` (Euclidean, from its starting checkpoint) and
        ``ratio`` (that distance over :meth:`length`)."""
        trajectory, length = self.trajectory(), self.length()
        acc_at = dict(zip(self.good.history["step"], self.good.history["train_acc"]))
        rows = []
        for i, run, point in zip(self.picks, self.bad, self.bad_points()):
            start, distance = self.good.checkpoints[i][0], float((point - trajectory[i]).norm())
            rows.append(dict(start=start, start_train_acc=acc_at.get(start, math.nan),
                             train_acc=run.final["train_acc"], test_acc=run.final["test_acc"],
                             distance=distance, ratio=distance / length))
        return rows

    @staticmethod
    def initialization_gap(pairs: int = 10) -> float:
        """A yardstick for the distances of :meth:`records`: the mean distance between two independent
        initializations of :func:`~genviz_lib.models.minefield_net` (seeds 1 and 2, 3 and 4, …)."""
        inits = []
        for seed in range(1, 2 * pairs + 1):
            torch.manual_seed(seed)
            inits.append(landscape.flatten(models.minefield_net()))
        return float(np.mean([(inits[i] - inits[i + 1]).norm() for i in range(0, 2 * pairs, 2)]))


def minefield(settings: Minefield, cache: ResultsCache | None = None, progress: bool = True) -> Field:
    """Train (or read back from the cache) the ordinary run and the poisoned runs of Huang et al.'s Fig. 1."""
    cache = cache or get_cache()
    spiral = data.minefield_spiral(n_train=200, n_test=200, n_poison=settings.n_poison, seed=settings.seed)
    s = settings

    def ordinary():
        torch.manual_seed(s.seed)
        return train.train(models.minefield_net(), spiral.train, spiral.test, lr=s.good_lr, steps=s.good_steps,
                           checkpoint_every=s.every, progress=progress, desc="ordinary training")

    # keyed on what the ordinary run depends on: the poisoned runs' settings do not retrain it
    good = cache.cached("ch2-minefield-ordinary", dict(good_steps=s.good_steps, good_lr=s.good_lr, every=s.every,
                                                       n_poison=s.n_poison, seed=s.seed), ordinary)
    picks = [i for i, (step, _) in enumerate(good.checkpoints) if step % s.start_every == 0]

    def poisoned(job):  # one job: the poisoned runs from a group of checkpoints, trained as one ensemble
        starts = []
        for i in job["picks"]:
            net = models.minefield_net()
            net.load_state_dict(good.checkpoints[i][1])
            starts.append(net)
        return train.train_ensemble(
            starts, spiral.train, spiral.test, poison=spiral.poison, poison_factor=s.beta,
            poison_schedule=train.stepped(s.bad_steps, s.ramp), poison_batch_size=s.poison_batch, lr=s.lr,
            steps=s.bad_steps, scheduler=train.exponential_decay(s.bad_steps), clip_grad_norm=s.clip,
            eval_every=max(1, s.bad_steps // 10), progress=progress, desc=f"poisoned runs {job['part']}")

    groups = [picks[i:i + s.runs_per_job] for i in range(0, len(picks), s.runs_per_job)]
    jobs = [dict(settings=settings, picks=g, part=f"{n + 1} of {len(groups)}") for n, g in enumerate(groups)]
    bad = [run for runs in cache.map("ch2-minefield-poisoned", jobs, poisoned) for run in runs]
    return Field(spiral, good, picks, bad)


#: The three ways chapter 2 compares of reaching a bad minimum by adding a set of points to the objective.
THREE_WAYS = ("poisoning", "attack set", "confusion set")

_DIGITS = 1797  # images in scikit-learn's 8×8 digits (data.digits)


@dataclasses.dataclass(frozen=True)
class ThreeWays(Settings):
    """Chapter 2's comparison on scikit-learn's 8×8 digits: the same perceptron, from the same initialization,
    fitted to the same training images plus an added set of growing size, for each way of :data:`THREE_WAYS`
    (Huang et al.'s poisoning, Wu et al.'s attack set, Neyshabur et al.'s confusion set), and once without."""

    n_train: int  # training images; the added sets are the next images of the same shuffled split
    sizes: tuple[int, ...]  # sizes of the added set; a 0 among them trains nothing (the clean net always trains)
    steps: int  # Adam steps of every net (full batch)
    widths: tuple[int, ...] = (128, 128)  # the perceptron's hidden widths
    lr: float = 1e-3  # Adam's starting learning rate, decaying to 3% of it
    beta: float = 0.5  # poisoning's factor; the attack set gets the matching weight λ = β/(1 − β)
    n_test: int = 597  # test images, split off the digits first
    seed: int = 0  # the split of the digits, the wrong and the random labels, and the one initialization

    def check(self) -> None:
        spare = _DIGITS - self.n_test - self.n_train
        if self.n_train < 1 or spare < 0:
            raise ValueError(f"need 1 ≤ n_train ≤ {_DIGITS - self.n_test} (the digits left after {self.n_test} "
                             f"test images), got {self.n_train}")
        if not self.sizes or min(self.sizes) < 0 or max(self.sizes) > spare:
            raise ValueError(f"the added sets must have 0 to {spare} images (those left after the training and "
                             f"test images), got {list(self.sizes)}")
        if not 0 < self.beta < 1:
            raise ValueError(f"beta must lie in (0, 1), got {self.beta}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "ThreeWays":
        p = get_profile(profile)
        return cls(n_train=p.pick(quick=200, book=300), steps=p.pick(quick=100, book=1000),
                   sizes=p.pick(quick=(0, 100), book=(0, 50, 150, 300, 600, 900)))


def three_ways(settings: ThreeWays, cache: ResultsCache | None = None, progress: bool = True) -> list[dict]:
    """Train (or read back, net by net) the clean net and one net per way of :data:`THREE_WAYS` and nonzero
    size of the added set. One row per net, the clean one first: ``method`` (``"clean"`` or a way), ``added``
    (the added set's size) and the final ``train`` and ``test`` accuracies."""
    cache = cache or get_cache()
    s = settings
    digits = data.digits(n_test=s.n_test, seed=s.seed)
    base, pool = digits.train.subset(slice(0, s.n_train)), digits.train.subset(slice(s.n_train, None))

    def fit(job):
        method, m = job["method"], job["size"]
        added = pool.subset(slice(0, m))
        if method == "poisoning":
            extra = dict(poison=added, poison_factor=s.beta)
        elif method == "attack set":
            extra = dict(attack=train.attack_set(added, 10, seed=s.seed), attack_weight=s.beta / (1 - s.beta))
        elif method == "confusion set":
            extra = dict(confusion=train.confusion_set(added, 10, seed=s.seed))
        else:  # the clean net
            extra = {}
        torch.manual_seed(s.seed)
        r = train.train(models.MLP(64, s.widths, 10), base, digits.test, lr=s.lr, steps=s.steps,
                        scheduler=train.exponential_decay(s.steps), eval_every=s.steps, progress=progress,
                        desc=f"{method}, {m} added", **extra)
        return dict(train=r.final["train_acc"], test=r.final["test_acc"])

    jobs = [{"recipe": s, "method": "clean", "size": 0}]
    jobs += [{"recipe": s, "method": k, "size": m} for k in THREE_WAYS for m in s.sizes if m]
    rows = cache.map("ch2-three-ways", jobs, fit)
    return [dict(method=job["method"], added=job["size"], **r) for job, r in zip(jobs, rows)]


# --------------------------------------------------------------------------------------------
# Basins measured: sweeps, images, attraction, rings (chapter 4)
# --------------------------------------------------------------------------------------------

def worst_fitted(sweep: Sweep, min_train_acc: float = 0.99) -> tuple[float, int]:
    """``(β, seed)`` of chapter 4's *bad* minimizer: the net of ``sweep`` with the lowest test accuracy among
    those that fit at least ``min_train_acc`` of their training set (on a tie, the first in the sweep's order)."""
    fitted = [r for r in sweep.records() if r["train_acc"] >= min_train_acc]
    if not fitted:
        raise ValueError(f"no net of the sweep fits {min_train_acc:.1%} of its training set")
    worst = min(fitted, key=lambda r: r["test_acc"])
    return worst["beta"], worst["seed"]


def at_cutoffs(summary: dict, cutoffs) -> list[dict]:
    """One row per cutoff of a :func:`basin_summary`: ``cutoff``, ``radius`` (the mean over the directions) and
    ``log10_V``; both are NaN at a cutoff the net's own loss is above (it is in no basin of that cutoff)."""
    kept = summary["cutoffs"]
    return [dict(cutoff=c, radius=float(summary["radii"][kept.index(c)].mean()) if c in kept else math.nan,
                 log10_V=summary["log10_volume"][kept.index(c)] if c in kept else math.nan) for c in cutoffs]


@dataclasses.dataclass(frozen=True)
class SweepBasins(Settings):
    """How chapter 4 measures every net of a :class:`PoisonSweep` (Huang et al.'s Fig. 5, Wu et al.'s Fig. 3):
    basin radii and volume on the clean training loss, and the Hessian's volume proxies."""

    cutoffs: tuple[float, ...]  # loss levels of the basins; a net whose own loss is above one has no basin there
    directions: int  # random unit directions, the same for every net (Huang et al. used 3,000)
    eigenvalues: int  # top Hessian eigenvalues per net (Lanczos) for Wu et al.'s V(k); 0 for none
    frobenius_samples: int  # random vectors of the ‖H‖_F² estimate (Wu et al.'s eq. 14); 0 for none
    rtol: float = 1e-2  # relative tolerance of a radius: the volumes compare orders of magnitude
    direction_seed: int = 0  # draws the directions and the Frobenius estimate's vectors

    def check(self) -> None:
        if self.directions < 1 or not self.cutoffs:
            raise ValueError(f"need at least one direction and one cutoff, got {self.directions} and "
                             f"{list(self.cutoffs)}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "SweepBasins":
        p = get_profile(profile)
        return cls(cutoffs=p.pick(quick=(1.0, 3.0, 10.0), book=(0.01, 0.1, 1.0)),
                   directions=p.pick(quick=30, book=300, full=3000), eigenvalues=p.pick(quick=3, book=10),
                   frobenius_samples=p.pick(quick=4, book=30))


def sweep_basins(sweep_settings: PoisonSweep, settings: SweepBasins, cache: ResultsCache | None = None,
                 progress: bool = True) -> list[dict]:
    """:func:`basin_summary` of every net of :func:`poison_sweep` (read back from the cache, or trained) on the
    clean training set, in the order of :meth:`Sweep.records` (seed by seed, β within a seed), each net
    cached as soon as it is measured."""
    cache = cache or get_cache()
    sweep = poison_sweep(sweep_settings, cache, progress)

    def summarize(job):
        run = sweep.runs[job["seed"]][sweep.betas.index(job["beta"])]
        return basin_summary(run.model, sweep.roll.train, settings.cutoffs, settings.directions, rtol=settings.rtol,
                             seed=settings.direction_seed, eigenvalues=settings.eigenvalues,
                             frobenius_samples=settings.frobenius_samples)

    jobs = [{"sweep": sweep_settings, "measure": settings, "seed": s, "beta": b}
            for s in range(sweep_settings.seeds) for b in sweep.betas]
    return cache.map("ch4-basins", jobs, summarize)


@dataclasses.dataclass(frozen=True)
class ImageBasins(Settings):
    """How chapter 4 measures the basins of the clean and the poisoned classifier of :class:`Images`."""

    cutoffs: tuple[float, ...]  # loss levels of the basins, above both nets' training losses
    directions: int  # random unit directions per net: few on a CPU, each costs many passes over the data
    r_min: float = 0.1  # bracketing starts here, near the radii expected, to save evaluations on a large net
    rtol: float = 1e-2  # relative tolerance of a radius

    def check(self) -> None:
        if self.directions < 1 or not self.cutoffs:
            raise ValueError(f"need at least one direction and one cutoff, got {self.directions} and "
                             f"{list(self.cutoffs)}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "ImageBasins":
        p = get_profile(profile)
        return cls(cutoffs=p.pick(quick=(3.0, 10.0), book=(1.0, 3.0)),
                   directions=p.pick(quick=5, book=40, full=1000))


def image_basins(images: Images, settings: ImageBasins, cache: ResultsCache | None = None, root=None,
                 progress: bool = True) -> list[dict]:
    """:func:`basin_summary` of the ``"clean"`` and the ``"poisoned"`` net of :func:`image_minimizers` (read back
    from the cache, or trained), in that order, on their training set; each cached."""
    cache = cache or get_cache()
    splits, pair = image_minimizers(images, cache, root, progress)
    jobs = [{"images": images, "measure": settings, "which": k} for k in pair]
    return cache.map("ch4-image-basins", jobs, lambda job: basin_summary(
        pair[job["which"]].model, splits.train, settings.cutoffs, settings.directions, rtol=settings.rtol,
        r_min=settings.r_min))


@dataclasses.dataclass(frozen=True)
class Attraction(Settings):
    """Wu et al.'s basins of attraction (§3.2) tested directly: clean training (Adam, full batch) started from
    a sweep's bad minimizer moved a distance ``t`` along random directions, and from fresh initializations."""

    distances: tuple[float, ...]  # how far the starts are moved; 0 is the minimizer itself (run once)
    directions: int  # random unit directions, each walked out to every distance
    fresh: int  # fresh random initializations: what a random start gives
    steps: int  # Adam steps of every run
    lr: float = 1e-3  # Adam's learning rate
    seed: int = 0  # draws the directions
    fresh_seed: int = 1000  # fresh start s is drawn under torch.manual_seed(fresh_seed + s)

    def check(self) -> None:
        if any(t < 0 for t in self.distances) or self.directions < 1 or self.steps < 1 or self.fresh < 0:
            raise ValueError(f"need distances ≥ 0, directions ≥ 1, steps ≥ 1 and fresh ≥ 0, got "
                             f"{list(self.distances)}, {self.directions}, {self.steps}, {self.fresh}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Attraction":
        p = get_profile(profile)
        return cls(distances=p.pick(quick=(0.0, 1.0, 10.0), book=(0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)),
                   directions=p.pick(quick=2, book=3), fresh=p.pick(quick=2, book=8),
                   steps=p.pick(quick=100, book=2000))


def attraction_runs(sweep_settings: PoisonSweep, settings: Attraction, bad: tuple[float, int],
                    cache: ResultsCache | None = None, progress: bool = True) -> list[dict]:
    """Clean training from near the net ``bad = (β, seed)`` of :func:`poison_sweep` and from fresh starts, all as
    one ensemble, cached. One row per run: ``start`` (``"bad"`` or ``"fresh"``), ``distance`` (the ``t`` it was
    moved by; for a fresh start, its distance from the bad minimizer), final ``train_acc`` and ``test_acc``."""
    cache = cache or get_cache()
    sweep = poison_sweep(sweep_settings, cache, progress)
    beta, seed = float(bad[0]), int(bad[1])
    model, roll = sweep.runs[seed][sweep.betas.index(beta)].model, sweep.roll

    def runs():
        theta_bad = landscape.flatten(model).detach()
        gen = torch.Generator().manual_seed(settings.seed)
        starts, labels = [], []
        for d in landscape.random_directions(theta_bad.numel(), settings.directions, gen):
            for t in settings.distances:
                if t == 0 and labels and labels[-1][0] == "bad":
                    continue  # one run from the minimizer itself is enough
                starts.append(landscape.moved(model, d, t))
                labels.append(("bad", t))
        for s in range(settings.fresh):
            torch.manual_seed(settings.fresh_seed + s)
            starts.append(models.swiss_roll_net())
            labels.append(("fresh", float((landscape.flatten(starts[-1]) - theta_bad).norm())))
        results = train.train_ensemble(starts, roll.train, roll.test, lr=settings.lr, steps=settings.steps,
                                       eval_every=settings.steps, progress=progress, desc="basins of attraction")
        return [dict(start=k, distance=t, train_acc=r.final["train_acc"], test_acc=r.final["test_acc"])
                for (k, t), r in zip(labels, results)]

    return cache.cached("ch4-attraction", {"sweep": sweep_settings, "attraction": settings, "bad": [beta, seed]},
                        runs)


@dataclasses.dataclass(frozen=True)
class RingBasins(Settings):
    """How chapter 4 measures each net of :class:`Rings`: its decision regions and input margin on a grid, and
    its basin radius."""

    directions: int  # random unit directions of the basin radius
    cutoff: float = 0.1  # the loss level of the basin
    extent: float = 1.2  # regions and margins are counted in the window [-extent, extent]²
    resolution: int = 300  # grid points per side: margins are measured to a step of 2·extent/resolution

    def check(self) -> None:
        if self.directions < 1 or self.resolution < 2:
            raise ValueError(f"need at least one direction and a grid of 2 points a side, got {self.directions} "
                             f"and {self.resolution}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "RingBasins":
        return cls(directions=get_profile(profile).pick(quick=10, book=100))


def ring_basins(rings: Rings, settings: RingBasins, cache: ResultsCache | None = None,
                progress: bool = True) -> list[dict]:
    """One row per net of :func:`rings_runs` (read back from the cache, or trained), gap by gap and seed by seed:
    ``gap``, ``seed``, ``train_acc``, ``regions`` (connected regions of the plane), ``margin`` (the smallest
    distance from a training point to the boundary) and ``radius`` (the mean basin radius at the cutoff; NaN
    when the net's own loss is above it). Each net is cached as soon as it is measured."""
    cache = cache or get_cache()
    runs = rings_runs(rings, cache, progress)

    def row(job):
        ring_data, fitted = runs[job["gap"]]
        run = fitted[job["seed"]]
        st = boundaries.boundary_stats(run.model, ring_data, extent=settings.extent, resolution=settings.resolution)
        summ = basin_summary(run.model, ring_data, [settings.cutoff], settings.directions)
        return dict(gap=job["gap"], seed=job["seed"], train_acc=run.final["train_acc"], regions=st["regions"],
                    margin=float(st["margin"].min()),
                    radius=float(summ["radii"][0].mean()) if summ["cutoffs"] else math.nan)

    jobs = [{"rings": rings.replace(gaps=(g,)), "measure": settings, "gap": g, "seed": s}
            for g in rings.gaps for s in range(rings.seeds)]
    return cache.map("ch4-rings", jobs, row)
