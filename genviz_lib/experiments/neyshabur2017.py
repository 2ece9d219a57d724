"""Neyshabur et al. (2017), *Exploring Generalization in Deep Learning*: the recipes of chapter 3's sharpness
and PAC-Bayes measurements, and of their norm/margin figures and Theorem 1's conditions.

- :func:`bicriteria_runs` — their Fig. 2: perceptrons fitted to Fashion-MNIST with true and with random labels,
  for several training-set sizes, and for each the expected sharpness and the KL term of the PAC-Bayes bound as
  the noise scale α varies (:func:`~genviz_lib.sharpness.bicriteria`).
- :func:`norms_vs_size` — their Fig. 1: ℓ2, ℓ1-path, ℓ2-path and spectral norms over the squared margin
  (:func:`fit_measures`) of bias-free perceptrons fitted to true and to random labels, by training-set size.
- :func:`confusion_sweep` — their Fig. 3: a fixed true training set plus a growing confusion set of random
  labels; every net fits both, its test error and its measures grow.
- :func:`hidden_units_sweep` — their Fig. 4: two-layer perceptrons of growing width fitted to one training set.
- :func:`conditions` — their Fig. 5 and appendix D: conditions C1 (:func:`condition_mu`), C2
  (:func:`near_zero_fraction`, :func:`flip_fraction`) and C3 (:func:`unit_norm_ratios`) of Theorem 1 on a
  trained deep perceptron and on its random initialization.

Each recipe takes its settings (``Bicriteria.for_profile(profile)``, ``NormsVsSize…``, ``ConfusionSweep…``,
``HiddenUnitsSweep…``, ``Conditions…``) and a results cache; called again with the same settings, it reads its
results back, net by net (the seeds of one cell of a sweep together).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import nn

from .. import data, landscape, losses, models, norms, sharpness, train
from ..config import Profile, ResultsCache, get_cache, get_profile
from .settings import Settings

#: The labels the nets of :func:`bicriteria_runs` are fitted to: the true ones, and uniformly random ones.
LABELS = ("true", "random")


@dataclasses.dataclass(frozen=True)
class Bicriteria(Settings):
    """Neyshabur et al.'s bi-criteria experiment on a CPU: a 196-128-128-10 perceptron on 14 × 14 Fashion-MNIST
    images, trained with Adam (full batch) until it fits its training set, once on true and once on random
    labels for each training-set size; then expected sharpness and KL under ``σ_i = α(10|w_i| + 1)``."""

    sizes: tuple[int, ...]  # training-set sizes m: the bound's terms shrink with m only for the true labels
    steps: int  # the most Adam steps a net gets; it stops as soon as it fits every training image
    alphas: tuple[float, ...]  # noise scales: small α gives little sharpness and a large KL, large α the reverse
    samples: int  # noise draws per α for the Monte Carlo estimate of the expected sharpness
    sharp_steps: int  # ascent steps of the max sharpness (their Fig. 2 left); the paper takes 2,000 SGD steps
    sharp_restarts: int = 4  # starting points of that ascent, the minimizer itself among them
    sharp_alpha: float = 5e-4  # the max sharpness's box α(|w_i| + 1), the paper's (after Keskar et al.)
    widths: tuple[int, ...] = (128, 128)  # the perceptron's hidden widths
    lr: float = 1e-3  # Adam's learning rate
    n_test: int = 500  # test images: only the true-label nets can generalize to them
    downsample: int = 2  # 28 × 28 images averaged to 14 × 14, which keeps the nets small
    label_seed: int = 1  # draws the random labels
    seed: int = 0  # the subsets, every net's initialization and the noise draws

    def check(self) -> None:
        if not self.sizes or min(self.sizes) < 10:
            raise ValueError(f"need training sets of at least 10 images (one per class), got {list(self.sizes)}")
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"need positive noise scales α, got {list(self.alphas)}")
        if self.samples < 2:
            raise ValueError(f"need at least 2 noise draws per α for a standard error, got {self.samples}")
        if min(self.sharp_steps, self.sharp_restarts) < 1 or self.sharp_alpha <= 0:
            raise ValueError(f"need sharp_steps, sharp_restarts ≥ 1 and sharp_alpha > 0, got {self.sharp_steps}, "
                             f"{self.sharp_restarts} and {self.sharp_alpha}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Bicriteria":
        p = get_profile(profile)
        return cls(sizes=p.pick(quick=(100,), book=(250, 500, 1000)), steps=p.pick(quick=100, book=3000),
                   alphas=p.pick(quick=(1e-3, 1e-2), book=(5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2)),
                   samples=p.pick(quick=20, book=200), sharp_steps=p.pick(quick=10, book=100))


def bicriteria_runs(settings: Bicriteria, cache: ResultsCache | None = None, root=None,
                    progress: bool = True) -> list[dict]:
    """Train (or read back, net by net) one net per training-set size and kind of :data:`LABELS` and measure it.

    One row per net, the sizes in order and for each the true labels first: ``size``, ``labels``, the final
    ``train_acc`` and ``test_acc``, ``steps`` (how long it trained) and, one entry per α of the settings, ``kl``
    (the KL term), ``sharp`` (the expected sharpness) and ``stderr`` (its Monte Carlo standard error), and
    ``max_sharpness`` (:func:`~genviz_lib.sharpness.sharpness` in the box ``sharp_alpha·(|w_i| + 1)``).
    ``root`` points the loader at Fashion-MNIST's files.
    """
    cache = cache or get_cache()
    s = settings

    @functools.cache  # the true- and the random-label net of a size share its images: read them once
    def subset(size):
        return data.load_fashion_mnist(n_train=size, n_test=s.n_test, downsample=s.downsample, seed=s.seed, root=root)

    def run(job):
        size, labels = job["size"], job["labels"]
        fm = subset(size)
        y = fm.train.y if labels == "true" else torch.randint(
            0, 10, fm.train.y.shape, generator=torch.Generator().manual_seed(s.label_seed))
        fit = data.Data(fm.train.X, y)
        torch.manual_seed(s.seed)
        net = models.MLP(fm.train.X[0].numel(), s.widths, 10)
        r = train.train(net, fit, fm.test, lr=s.lr, steps=s.steps, stop_at_accuracy=1.0, eval_every=10,
                        progress=progress, desc=f"{labels} labels, m={size}")
        f, w = landscape.objective(net, fit.X, fit.y), landscape.flatten(net)
        bc = sharpness.bicriteria(f, w, s.alphas, samples=s.samples,
                                  generator=torch.Generator().manual_seed(s.seed))
        top = sharpness.sharpness(f, w, alpha=s.sharp_alpha, steps=s.sharp_steps, restarts=s.sharp_restarts,
                                  generator=torch.Generator().manual_seed(s.seed))
        return dict(train_acc=r.final["train_acc"], test_acc=r.final["test_acc"], steps=r.steps,
                    kl=bc.kl.tolist(), sharp=bc.expected_sharpness.tolist(), stderr=bc.stderr.tolist(),
                    max_sharpness=float(top))

    jobs = [{"recipe": s, "size": m, "labels": lab} for m in s.sizes for lab in LABELS]
    rows = cache.map("ch3-bicriteria", jobs, run)
    return [dict(size=job["size"], labels=job["labels"], **r) for job, r in zip(jobs, rows)]


# ============================================================================================
# Their Figs. 1, 3, 4 and 5: norm/margin measures, and the conditions of Theorem 1
# ============================================================================================
#
# Every net below is a bias-free ReLU perceptron (``models.MLP(..., bias=False)``), so that the path norms are
# sums over input→output paths; the nets of one cell of a sweep (same architecture, same data, several seeds)
# are trained together as one batched model (``train.train_ensemble``), full batch with Adam, each stopping as
# soon as it classifies every point it is fitted to (the paper trains with SGD until the cross-entropy is below
# 1e-4). A net that has not fitted its points when the step budget runs out is kept and reported (``fitted``).

#: The measures of :func:`fit_measures`, each over the squared margin γ² (their Fig. 1, constants dropped).
MEASURES = ("l2", "l1_path", "l2_path", "spectral")


def fit_measures(net: nn.Module, X: torch.Tensor, y: torch.Tensor, percentile: float = 5.0) -> dict:
    """Neyshabur et al.'s measures of a bias-free net on the points it was fitted to, as in their Fig. 1.

    ``margin`` is γ, the ``percentile``-th percentile margin (:func:`~genviz_lib.norms.margin`); ``l2``,
    ``l1_path``, ``l2_path`` and ``spectral`` are :func:`~genviz_lib.norms.measures`: ``Π‖W_i‖_F²/γ²``,
    ``(Σ_paths Π|w|)²/γ²``, ``Σ_paths Π w²/γ²`` and ``Π‖W_i‖_2²/γ²``, the terms that depend only on depth or
    width dropped as in their plots (the bounds carry ``4^d`` on ℓ2 and ℓ2-path, ``2^d`` inside the ℓ1-path).
    ``l2_path_h`` and ``spectral_h`` put back the width factor ``Π_{i=1}^d h_i`` (``units``) of the ℓ2-path and
    spectral capacity bounds (§2.2), which their Fig. 4 discussion says must be counted when widths differ.
    With γ ≤ 0 (the net misclassifies more than ``percentile`` % of the points) every measure is NaN.
    """
    units = math.prod(m.out_features for m in net.modules() if isinstance(m, nn.Linear))
    gamma = norms.margin(net, X, y, percentile)
    if gamma <= 0:
        nan = float("nan")
        return dict(margin=gamma, units=units, **{k: nan for k in MEASURES}, l2_path_h=nan, spectral_h=nan)
    m = norms.measures(net, X, y, percentile)
    return dict(margin=m["margin"], units=units, **{k: m[k] for k in MEASURES},
                l2_path_h=units * m["l2_path"], spectral_h=units * m["spectral"])


def _check_common(s) -> None:
    if not s.widths or min(s.widths) < 1:
        raise ValueError(f"need at least one hidden layer of positive width, got widths={list(s.widths)}")
    if s.steps < 1 or s.seeds < 1:
        raise ValueError(f"need steps ≥ 1 and seeds ≥ 1, got {s.steps} and {s.seeds}")
    if not s.lr > 0:
        raise ValueError(f"need a positive learning rate, got {s.lr}")
    if not 0 < s.percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {s.percentile}")
    if s.n_test < 1 or s.downsample not in (1, 2):
        raise ValueError(f"need n_test ≥ 1 and downsample 1 or 2, got {s.n_test} and {s.downsample}")


@functools.lru_cache(maxsize=1)
def _fashion_files(folder: str) -> tuple:
    """Fashion-MNIST's raw train and test arrays in ``folder``, read once per process for all the recipes below
    (a read takes about a second)."""
    return data.fashion_mnist("train", folder), data.fashion_mnist("test", folder)


def _load(s, n_train: int, n_poison: int = 0, root=None) -> data.Splits:
    """What ``data.load_fashion_mnist(n_train, s.n_test, n_poison, s.downsample, s.seed, root)`` returns, from the
    arrays of :func:`_fashion_files` (keyed on the folder the files are found in, downloading them if allowed)."""
    train_raw, test_raw = _fashion_files(str(data.find_fashion_mnist(root)))
    return data._image_splits("Fashion-MNIST", train_raw, test_raw, n_train, s.n_test, n_poison, 10, s.downsample,
                              s.seed)


def _fit_seeds(s, widths, fit: data.Data, test: data.Data, progress: bool, desc: str) -> list:
    """``s.seeds`` bias-free perceptrons ``in → widths → 10`` (member k initialized under seed ``s.seed + k``),
    trained together on ``fit`` until each classifies every point of it or the budget ``s.steps`` runs out."""
    nets = []
    for k in range(s.seeds):
        torch.manual_seed(s.seed + k)
        nets.append(models.MLP(fit.X[0].numel(), widths, 10, bias=False))
    results = train.train_ensemble(nets, fit, test, lr=s.lr, steps=s.steps, stop_at_accuracy=1.0, eval_every=10,
                                   progress=progress, desc=desc)
    for r in results:  # measured on the CPU, where the data are
        r.model = r.model.cpu()
    return results


def _accuracy(net: nn.Module, d: data.Data) -> float:
    return float(losses.evaluate(net, d)[1][0]) if len(d) else float("nan")


# --------------------------------------------------------------------------------------------
# Fig. 1: norms over margins against the training-set size, true and random labels
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NormsVsSize(Settings):
    """Their Fig. 1 on a CPU: bias-free ``196 → widths → 10`` perceptrons (not VGG) fitted to class-balanced
    14 × 14 Fashion-MNIST subsets (not CIFAR-10) of each size ``m``, once with the true labels and once with
    uniformly random ones, by full-batch Adam (not SGD with momentum, batch 64) until every training image is
    classified right (not until the cross-entropy is below 1e-4)."""

    sizes: tuple[int, ...]  # training-set sizes m; the paper goes up to the 50,000 images of CIFAR-10
    steps: int  # the most Adam steps a net gets; it stops as soon as it fits every training image
    seeds: int = 1  # nets per size and labels (initializations), trained together as one batched model
    widths: tuple[int, ...] = (128, 128)  # hidden widths
    lr: float = 2e-3  # Adam's learning rate
    percentile: float = 5.0  # the margin γ is this percentile of the training margins (theirs: 5th)
    n_test: int = 1000  # test images for the test error
    downsample: int = 2  # 28 × 28 images averaged to 14 × 14
    label_seed: int = 1  # draws the random labels
    seed: int = 0  # the subsets and the first net's initialization

    def check(self) -> None:
        if not self.sizes or min(self.sizes) < 10 or len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"need distinct training-set sizes of at least 10 images, got {list(self.sizes)}")
        _check_common(self)

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "NormsVsSize":
        p = get_profile(profile)
        return cls(sizes=p.pick(quick=(20, 40), book=(250, 500, 1000, 2000)), steps=p.pick(quick=300, book=2000),
                   seeds=p.pick(quick=1, book=1, full=3), widths=p.pick(quick=(32, 32), book=(128, 128)),
                   n_test=p.pick(quick=30, book=1000))


def norms_vs_size(settings: NormsVsSize, cache: ResultsCache | None = None, root=None,
                  progress: bool = True) -> list[dict]:
    """Neyshabur et al.'s Fig. 1: norm/margin measures of nets fitted to true and to random labels, by size.

    One row per net, the sizes in order, for each the true labels first and then the seeds: ``size``, ``labels``
    (``"true"`` or ``"random"``), ``seed``, ``fitted`` (every training image classified right), ``train_error``,
    ``test_error``, ``steps``, and :func:`fit_measures` on the training set: ``margin``, ``l2``, ``l1_path``,
    ``l2_path``, ``spectral`` (each over γ², the paper's normalization: no division by m, constants of depth and
    width dropped), ``units``, ``l2_path_h``, ``spectral_h``. The paper expects every measure to be larger for
    random labels and to grow faster with m for them. Cached per size and labels (all seeds together).
    """
    cache = cache or get_cache()
    s = settings

    @functools.cache  # one read of the files; each size a class-balanced subset of the largest
    def splits():
        return _load(s, max(s.sizes), root=root)

    def run(job):
        size, labels = job["size"], job["labels"]
        fm = splits()
        sub = fm.train.subset(torch.as_tensor(data.balanced_indices(fm.train.y, size, 10, rng=s.seed)))
        fit = sub if labels == "true" else train.confusion_set(sub, 10, seed=s.label_seed)
        results = _fit_seeds(s, s.widths, fit, fm.test, progress, f"{labels} labels, m={size}")
        rows = []
        for k, r in enumerate(results):
            f = r.final
            rows.append(dict(seed=s.seed + k, fitted=bool(f["train_acc"] == 1.0), train_error=1 - f["train_acc"],
                             test_error=1 - f["test_acc"], steps=r.steps,
                             **fit_measures(r.model, fit.X, fit.y, s.percentile)))
        return rows

    jobs = [{"recipe": s, "size": m, "labels": lab} for m in s.sizes for lab in LABELS]
    out = cache.map("neyshabur-fig1-norms", jobs, run)
    return [dict(size=job["size"], labels=job["labels"], **row) for job, rows in zip(jobs, out) for row in rows]


# --------------------------------------------------------------------------------------------
# Fig. 3: global minima of the true training set that generalize worse and worse (confusion sets)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConfusionSweep(Settings):
    """Their Fig. 3 on a CPU: a fixed class-balanced set of ``size`` 14 × 14 Fashion-MNIST images with true labels
    (theirs: 10,000 CIFAR-10 images) plus a *confusion set* of other training images with uniformly random
    labels, of each size in ``confusion`` (the sets nested: each is the start of the next); bias-free
    perceptrons (not VGG) are fitted by full-batch Adam to the union until they classify every image of it, so
    every net is a global minimum on the true set."""

    size: int  # images with true labels, the same for every net
    confusion: tuple[int, ...]  # confusion-set sizes (0: the plain net), images disjoint from the true set
    steps: int  # the most Adam steps a net gets; it stops as soon as it fits the union
    seeds: int = 1  # nets per confusion size (initializations), trained together as one batched model
    widths: tuple[int, ...] = (128, 128)
    lr: float = 2e-3
    percentile: float = 5.0  # γ over the true training set
    n_test: int = 1000
    downsample: int = 2
    label_seed: int = 1  # draws the confusion set's random labels
    seed: int = 0  # the subsets and the first net's initialization

    def check(self) -> None:
        if self.size < 10:
            raise ValueError(f"need a true training set of at least 10 images, got {self.size}")
        if not self.confusion or min(self.confusion) < 0 or len(set(self.confusion)) != len(self.confusion):
            raise ValueError(f"need distinct confusion-set sizes ≥ 0, got {list(self.confusion)}")
        _check_common(self)

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "ConfusionSweep":
        p = get_profile(profile)
        return cls(size=p.pick(quick=20, book=500), confusion=p.pick(quick=(0, 10, 20), book=(0, 100, 200, 400, 800)),
                   steps=p.pick(quick=300, book=2000), seeds=p.pick(quick=1, book=1, full=3),
                   widths=p.pick(quick=(32, 32), book=(128, 128)), n_test=p.pick(quick=30, book=1000))


def confusion_sweep(settings: ConfusionSweep, cache: ResultsCache | None = None, root=None,
                    progress: bool = True) -> list[dict]:
    """Neyshabur et al.'s Fig. 3: nets fitted to a true training set plus a growing confusion set.

    One row per net, confusion sizes in order, then seeds: ``confusion`` (its size), ``seed``, ``fitted`` (every
    image of the union classified right), ``train_error`` (on the true set), ``confusion_error`` (on the
    confusion set, NaN when it is empty), ``test_error``, ``steps``, and :func:`fit_measures` on the *true*
    training set (``margin``, ``l2``, ``l1_path``, ``l2_path``, ``spectral``, ``units``, ``l2_path_h``,
    ``spectral_h``): all nets are global minima of that set, and the paper expects the measures to grow with the
    test error. Cached per confusion size (all seeds together).
    """
    cache = cache or get_cache()
    s = settings

    @functools.cache
    def splits():
        fm = _load(s, s.size, n_poison=max(s.confusion), root=root)
        pool = train.confusion_set(fm.poison, 10, seed=s.label_seed) if fm.poison is not None else None
        return fm, pool

    def run(job):
        n = job["confusion"]
        fm, pool = splits()
        extra = pool.subset(torch.arange(n)) if n else data.Data(fm.train.X[:0], fm.train.y[:0])
        union = data.Data(torch.cat([fm.train.X, extra.X]), torch.cat([fm.train.y, extra.y]))
        # Trained on the union as one set, so that each net stops when it fits the confusion points too.
        results = _fit_seeds(s, s.widths, union, fm.test, progress, f"confusion set of {n}")
        rows = []
        for k, r in enumerate(results):
            net = r.model
            rows.append(dict(seed=s.seed + k, fitted=bool(r.final["train_acc"] == 1.0),
                             train_error=1 - _accuracy(net, fm.train), confusion_error=1 - _accuracy(net, extra),
                             test_error=1 - r.final["test_acc"], steps=r.steps,
                             **fit_measures(net, fm.train.X, fm.train.y, s.percentile)))
        return rows

    jobs = [{"recipe": s, "confusion": n} for n in s.confusion]
    out = cache.map("neyshabur-fig3-confusion", jobs, run)
    return [dict(confusion=job["confusion"], **row) for job, rows in zip(jobs, out) for row in rows]


# --------------------------------------------------------------------------------------------
# Fig. 4: two-layer perceptrons of growing width
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HiddenUnitsSweep(Settings):
    """Their Fig. 4 on a CPU: bias-free two-layer perceptrons ``196 → h → 10`` (one hidden layer, as theirs) for
    each width ``h``, fitted by full-batch Adam (not SGD, batch 64) to ``size`` class-balanced 14 × 14
    Fashion-MNIST images with true labels (theirs: all of MNIST's 60,000) until they classify every one."""

    size: int  # training images (true labels)
    widths: tuple[int, ...]  # the hidden widths h swept; a net too narrow to fit is kept, ``fitted`` False
    steps: int
    seeds: int = 1  # nets per width, trained together as one batched model
    lr: float = 2e-3
    percentile: float = 5.0
    n_test: int = 1000
    downsample: int = 2
    seed: int = 0

    def check(self) -> None:
        if self.size < 10:
            raise ValueError(f"need a training set of at least 10 images, got {self.size}")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError(f"need distinct widths, got {list(self.widths)}")
        _check_common(self)

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "HiddenUnitsSweep":
        p = get_profile(profile)
        return cls(size=p.pick(quick=40, book=1000),
                   widths=p.pick(quick=(8, 32), book=(8, 16, 32, 64, 128, 256, 512, 1024)),
                   steps=p.pick(quick=300, book=1000), seeds=p.pick(quick=1, book=1, full=3),
                   n_test=p.pick(quick=30, book=1000))


def hidden_units_sweep(settings: HiddenUnitsSweep, cache: ResultsCache | None = None, root=None,
                       progress: bool = True) -> list[dict]:
    """Neyshabur et al.'s Fig. 4: measures and errors of two-layer perceptrons against the number of hidden units.

    One row per net, widths in order, then seeds: ``hidden`` (the width h), ``seed``, ``fitted``, ``train_error``,
    ``test_error``, ``steps``, ``parameters``, and :func:`fit_measures` on the training set. ``l2_path_h`` and
    ``spectral_h`` carry the factor ``Π h_i = 10h`` of the capacity bounds, which the paper says must be counted
    here (it makes ℓ2-path and spectral grow with h). Cached per width (all seeds together).
    """
    cache = cache or get_cache()
    s = settings

    @functools.cache
    def splits():
        return _load(s, s.size, root=root)

    def run(job):
        h = job["hidden"]
        fm = splits()
        results = _fit_seeds(s, (h,), fm.train, fm.test, progress, f"{h} hidden units")
        return [dict(seed=s.seed + k, fitted=bool(r.final["train_acc"] == 1.0), train_error=1 - r.final["train_acc"],
                     test_error=1 - r.final["test_acc"], steps=r.steps, parameters=models.count_parameters(r.model),
                     **fit_measures(r.model, fm.train.X, fm.train.y, s.percentile)) for k, r in enumerate(results)]

    jobs = [{"recipe": s, "hidden": h} for h in s.widths]
    out = cache.map("neyshabur-fig4-width", jobs, run)
    return [dict(hidden=job["hidden"], **row) for job, rows in zip(jobs, out) for row in rows]


# --------------------------------------------------------------------------------------------
# Fig. 5 (and appendix D): the conditions C1–C3 of Theorem 1
# --------------------------------------------------------------------------------------------


def relu_chain(model: nn.Module) -> list[torch.Tensor]:
    """The weights ``W_1 … W_d`` (float64 copies, ``W_i`` of shape ``[h_i, h_{i−1}]``) of a bias-free chain
    ``Linear → ReLU → … → Linear`` such as ``models.MLP(..., bias=False)``; anything else raises."""
    leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, (nn.Flatten, nn.Identity))]
    kinds = ["L" if isinstance(m, nn.Linear) else "R" if isinstance(m, nn.ReLU) else type(m).__name__ for m in leaves]
    if not kinds or kinds[0::2] != ["L"] * len(kinds[0::2]) or kinds[1::2] != ["R"] * len(kinds[1::2]) \
            or kinds[-1] != "L":
        raise ValueError(f"need a chain Linear → ReLU → … → Linear, got the layers {kinds}")
    linears = [m for m in leaves if isinstance(m, nn.Linear)]
    if any(m.bias is not None for m in linears):
        raise ValueError("Theorem 1's conditions are for bias-free nets: build the MLP with bias=False")
    return [m.weight.detach().double().cpu() for m in linears]


def preactivations(weights: list[torch.Tensor], X: torch.Tensor) -> list[torch.Tensor]:
    """``z_1 … z_d`` for inputs ``X`` (flattened, float64): ``z_i = W_i f_{i−1}``, ``f_0 = x``, ``f_i = relu(z_i)``."""
    f, out = X.flatten(1).double().cpu(), []
    for i, W in enumerate(weights):
        z = f @ W.T
        out.append(z)
        f = z.clamp(min=0)
    return out


def _masks(zs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The diagonals of ``D_1 … D_d``: 1 where a hidden unit is active (``z > 0``), all ones for the output layer."""
    return [(z > 0).double() for z in zs[:-1]] + [torch.ones_like(zs[-1])]


def condition_mu(model: nn.Module, X: torch.Tensor) -> tuple[list[tuple[int, int, int]], torch.Tensor]:
    """Condition C1 of Theorem 1: for every input ``x`` and every ``0 ≤ a ≤ c < b ≤ d``,

        ``μ_{a,c,b}(x) = √h_c ‖Π_{i=a}^b D_i W_i‖_F / (‖Π_{i=c+1}^b D_i W_i‖_F ‖Π_{i=a}^c D_i W_i‖_F)``,

    with ``W_0 = x``, ``D_0 = I`` (so a product from ``a = 0`` is the vector ``f_b(x)``) and ``D_d = I``; C1 asks
    ``μ_{a,c,b} ≥ μ``, and ``1/μ`` is their "condition number". Random Gaussian layers give μ ≈ 1; layers that
    cancel (orthogonal to each other) give μ → 0. The triples are those of their Fig. 6 (``a ≤ c ≤ b − 1``;
    the condition's text writes ``a < c``). Returns the triples and ``μ`` of shape ``[triples, inputs]`` (NaN
    where a product is zero, e.g. a layer with no active unit).
    """
    weights = relu_chain(model)
    d, x = len(weights), X.flatten(1).double().cpu()
    zs = preactivations(weights, x)
    masks = _masks(zs)
    widths = [x.shape[1]] + [W.shape[0] for W in weights]
    norm = {(0, 0): x.norm(dim=1)}
    f = x
    for b in range(1, d + 1):
        f = masks[b - 1] * (f @ weights[b - 1].T)
        norm[(0, b)] = f.norm(dim=1)
    for a in range(1, d + 1):
        M = masks[a - 1][:, :, None] * weights[a - 1]  # D_a W_a for every input: [N, h_a, h_{a-1}]
        norm[(a, a)] = M.flatten(1).norm(dim=1)
        for b in range(a + 1, d + 1):
            M = masks[b - 1][:, :, None] * (weights[b - 1] @ M)
            norm[(a, b)] = M.flatten(1).norm(dim=1)
    triples = [(a, c, b) for a in range(d) for b in range(a + 1, d + 1) for c in range(a, b)]
    mu = torch.stack([math.sqrt(widths[c]) * norm[(a, b)] / (norm[(c + 1, b)] * norm[(a, c)]) for a, c, b in triples])
    return triples, mu


def near_zero_fraction(model: nn.Module, X: torch.Tensor, deltas) -> torch.Tensor:
    """Condition C2 of Theorem 1, scale-free: ``[hidden layers, deltas]``, for hidden layer ``k`` and each δ the
    fraction of its units with ``|z_{k,i}(x)| < δ · rms_k(x)``, averaged over the inputs, where ``z_k`` are the
    layer's pre-activations and ``rms_k(x) = ‖z_k(x)‖/√h_k``. These are the units a perturbation that moves each
    pre-activation by less than δ (in units of the layer's typical pre-activation) could switch; C2 asks the
    fraction to stay below ``C2 · δ``. (The paper states it for raw pre-activations with ``‖x‖ = 1``, which
    depends on how the weights' scale is spread over the layers; dividing by the rms removes that.)"""
    deltas = torch.as_tensor(deltas, dtype=torch.float64)
    zs = preactivations(relu_chain(model), X)[:-1]
    out = []
    for z in zs:
        rms = z.norm(dim=1, keepdim=True) / math.sqrt(z.shape[1])
        out.append(torch.stack([(z.abs() < delta * rms).double().mean() for delta in deltas]))
    return torch.stack(out) if out else torch.zeros(0, len(deltas), dtype=torch.float64)


def flip_fraction(model: nn.Module, X: torch.Tensor, deltas, draws: int = 4,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The fraction of activations that flip under a random perturbation of relative size δ: ``[hidden layers,
    deltas]``, averaged over the inputs and ``draws`` perturbations. Every layer's weights get Gaussian noise
    ``ν_i ~ N(0, σ_i²)`` with ``σ_i = δ ‖W_i‖_F / √(h_i h_{i−1})`` (Theorem 1's ``γ_i`` scaling: ``σ_i√(h_i h_{i−1})/‖W_i‖_F
    = δ``, which moves a random layer's pre-activations by about δ times their rms), and a unit of hidden layer
    ``k`` flips when its activation pattern ``1{z > 0}`` differs from the unperturbed net's. At δ = 0 nothing flips."""
    weights = relu_chain(model)
    deltas = torch.as_tensor(deltas, dtype=torch.float64)
    x = X.flatten(1).double().cpu()
    base = [z > 0 for z in preactivations(weights, x)[:-1]]
    scale = [W.norm() / math.sqrt(W.numel()) for W in weights]
    out = torch.zeros(len(base), len(deltas), dtype=torch.float64)
    for j, delta in enumerate(deltas):
        for _ in range(draws):
            noisy = [W + delta * s * torch.randn(W.shape, generator=generator, dtype=torch.float64)
                     for W, s in zip(weights, scale)]
            for k, z in enumerate(preactivations(noisy, x)[:-1]):
                out[k, j] += ((z > 0) != base[k]).double().mean() / draws
    return out


def unit_norm_ratios(model: nn.Module) -> list[torch.Tensor]:
    """Condition C3 of Theorem 1, per layer (the output layer too): each unit's squared incoming-weight norm over
    the layer's mean, ``h_i ‖W_{i,j}‖² / ‖W_i‖_F²`` (their Fig. 5 right; the mean over a layer is 1). The condition
    ``h_i ‖W_i‖²_{2,∞} ≤ C3² ‖W_i‖_F²`` holds with ``C3² = max_j`` of these ratios."""
    out = []
    for W in relu_chain(model):
        rows = W.pow(2).sum(1)
        out.append(W.shape[0] * rows / rows.sum())
    return out


def active_unit_norm_ratio(model: nn.Module, X: torch.Tensor) -> list[torch.Tensor]:
    """C3 as Theorem 1 writes it, with the active units only: per layer and input, ``h_i ‖W_i‖²_{2,∞} /
    ‖D_i(x) W_i‖_F²`` (``D_d = I``); ``[inputs]`` per layer, infinite where no unit of the layer is active."""
    weights = relu_chain(model)
    masks = _masks(preactivations(weights, X))
    out = []
    for W, D in zip(weights, masks):
        rows = W.pow(2).sum(1)
        out.append(W.shape[0] * rows.max() / (D * rows).sum(1))
    return out


@dataclasses.dataclass(frozen=True)
class Conditions(Settings):
    """Their Fig. 5 and appendix D on a CPU: a bias-free ReLU perceptron ``196 → widths → 10`` (theirs: 10 layers
    of 1,000 units on MNIST) fitted by full-batch Adam to ``size`` class-balanced 14 × 14 Fashion-MNIST images
    until it classifies every one; conditions C1–C3 of Theorem 1 on it and on its random initialization (Glorot
    uniform), measured at ``n_inputs`` of its training images."""

    size: int  # training images (true labels)
    steps: int
    widths: tuple[int, ...] = (128, 128, 128, 128, 128)  # hidden widths: d = len(widths) + 1 layers
    n_inputs: int = 64  # training images at which C1 and C2 are measured (C1 costs d² products per image)
    deltas: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # perturbation sizes δ of C2
    draws: int = 4  # weight perturbations per δ for the measured flips
    lr: float = 2e-3
    n_test: int = 1000
    downsample: int = 2
    seed: int = 0  # the subset, the initialization and the perturbations

    def check(self) -> None:
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"need at least one hidden layer of positive width, got widths={list(self.widths)}")
        if self.size < 10 or not 1 <= self.n_inputs <= self.size:
            raise ValueError(f"need size ≥ 10 and 1 ≤ n_inputs ≤ size, got {self.size} and {self.n_inputs}")
        if not self.deltas or min(self.deltas) < 0:
            raise ValueError(f"need perturbation sizes δ ≥ 0, got {list(self.deltas)}")
        if self.steps < 1 or self.draws < 1 or not self.lr > 0:
            raise ValueError(f"need steps ≥ 1, draws ≥ 1 and lr > 0, got {self.steps}, {self.draws} and {self.lr}")
        if self.n_test < 1 or self.downsample not in (1, 2):
            raise ValueError(f"need n_test ≥ 1 and downsample 1 or 2, got {self.n_test} and {self.downsample}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Conditions":
        p = get_profile(profile)
        return cls(size=p.pick(quick=40, book=1000), steps=p.pick(quick=300, book=2000),
                   widths=p.pick(quick=(16, 16, 16), book=(128,) * 5), n_inputs=p.pick(quick=10, book=64),
                   deltas=p.pick(quick=(0.0, 0.1, 0.5), book=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)),
                   draws=p.pick(quick=2, book=4), n_test=p.pick(quick=30, book=1000))


#: The two nets of :func:`conditions`: the random initialization and the trained net that starts from it.
WEIGHTS = ("initial", "trained")


def conditions(settings: Conditions, cache: ResultsCache | None = None, root=None, progress: bool = True) -> dict:
    """Neyshabur et al.'s Fig. 5 (and Figs. 6–8 of their appendix): C1–C3 of Theorem 1 on a trained perceptron and
    on its random initialization.

    Returns four lists of rows, each row with ``weights`` (``"initial"`` or ``"trained"``):

    - ``"c1"``: one per triple ``a ≤ c < b`` of :func:`condition_mu`: ``a``, ``c``, ``b``, ``case`` (``"edge"``
      when ``c = a`` or ``c = b − 1``, else ``"inner"``: the split of their Fig. 6), ``mu`` (a list, one value per
      input: histogram ``1/mu`` for their Fig. 5 left), ``mu_min``, ``mu_median``;
    - ``"c2"``: one per hidden layer and δ: ``layer`` (1…d−1), ``delta``, ``near_zero`` (:func:`near_zero_fraction`),
      ``ratio`` (``near_zero/δ``, NaN at δ = 0: C2 is its largest value), ``flipped`` (:func:`flip_fraction`);
    - ``"c3"``: one per layer (1…d, the output layer last): ``layer``, ``hidden`` (False for the output layer),
      ``ratios`` (a list, :func:`unit_norm_ratios`, one per unit: their Fig. 5 right), ``c3`` (``√max ratio``),
      ``c3_active`` (the median over the inputs of ``√``:func:`active_unit_norm_ratio`);
    - ``"summary"``: one per net: ``train_error``, ``test_error``, ``fitted``, ``steps`` (0 for the
      initialization), ``mu_min``, ``mu_p05`` (5th percentile over triples and inputs), ``inv_mu_max``, ``c2``
      (largest ``ratio`` over hidden layers and δ > 0), ``c3`` and ``c3_active`` (largest over layers). The paper
      reports μ ≥ 1/4, C2 ≤ 5 and C3 ≤ 3 for its trained net, and a trained net much like its initialization.

    Cached per net (the trained one holds its training).
    """
    cache = cache or get_cache()
    s = settings

    @functools.cache
    def splits():
        return _load(s, s.size, root=root)

    def run(job):
        fm = splits()
        torch.manual_seed(s.seed)
        net = models.MLP(fm.train.X[0].numel(), s.widths, 10, bias=False)
        steps = 0
        if job["weights"] == "trained":
            r = train.train(net, fm.train, fm.test, lr=s.lr, steps=s.steps, stop_at_accuracy=1.0, eval_every=10,
                            progress=progress, desc=f"{len(s.widths) + 1}-layer perceptron")
            steps, net = r.steps, net.cpu()
        train_acc, test_acc = _accuracy(net, fm.train), _accuracy(net, fm.test)
        fitted = bool(train_acc == 1.0)
        X = fm.train.X[: s.n_inputs]
        d = len(s.widths) + 1

        triples, mu = condition_mu(net, X)
        c1 = [dict(a=a, c=c, b=b, case="edge" if c in (a, b - 1) else "inner", mu=m.tolist(),
                   mu_min=float(m.min()), mu_median=float(m.median())) for (a, c, b), m in zip(triples, mu)]

        near = near_zero_fraction(net, X, s.deltas)
        flips = flip_fraction(net, X, s.deltas, s.draws, torch.Generator().manual_seed(s.seed))
        c2 = [dict(layer=k + 1, delta=float(delta), near_zero=float(near[k, j]),
                   ratio=float(near[k, j] / delta) if delta > 0 else float("nan"), flipped=float(flips[k, j]))
              for k in range(d - 1) for j, delta in enumerate(s.deltas)]

        active = active_unit_norm_ratio(net, X)
        c3 = [dict(layer=i + 1, hidden=i < d - 1, ratios=r.tolist(), c3=float(r.max().sqrt()),
                   c3_active=float(active[i].sqrt().median())) for i, r in enumerate(unit_norm_ratios(net))]

        flat = mu[torch.isfinite(mu)]
        ratios = [row["ratio"] for row in c2 if row["delta"] > 0]
        summary = dict(train_error=1 - train_acc, test_error=1 - test_acc, fitted=fitted, steps=steps,
                       mu_min=float(flat.min()), mu_p05=float(torch.quantile(flat, 0.05)),
                       inv_mu_max=float(1 / flat.min()), c2=max(ratios) if ratios else float("nan"),
                       c3=max(row["c3"] for row in c3), c3_active=max(row["c3_active"] for row in c3))
        return dict(c1=c1, c2=c2, c3=c3, summary=summary)

    jobs = [{"recipe": s, "weights": w} for w in WEIGHTS]
    out = cache.map("neyshabur-fig5-conditions", jobs, run)
    tables = {key: [dict(weights=job["weights"], **row) for job, r in zip(jobs, out) for row in r[key]]
              for key in ("c1", "c2", "c3")}
    tables["summary"] = [dict(weights=job["weights"], **r["summary"]) for job, r in zip(jobs, out)]
    return tables
