"""Wu, Zhu and E (2017), *Towards Understanding Generalization of Deep Learning: Perspective of Loss Landscapes*:
the recipes of chapter 1 that follow their Fig. 1 and Tables 1 and 2.

- :func:`five_point_fits` — ReLU nets of width 40 and growing depth fitted to five noisy points of a cubic,
  and one net fitted with attack points whose targets are wrong on purpose (their Fig. 1 and eq. 12);
- :func:`batch_and_init_runs` — full batch against mini-batches (their Table 1) and several initializations
  (Table 2), SGD with momentum on the perceptron and the data of chapter 1's optimizer table.
"""

from __future__ import annotations

import dataclasses

import torch

from .. import data, models, train
from ..config import Profile, ResultsCache, get_cache, get_profile
from .settings import Settings

# --------------------------------------------------------------------------------------------
# Many layers, five points (Wu et al.'s Fig. 1)
# --------------------------------------------------------------------------------------------

#: The five training inputs; their targets are :func:`cubic` plus noise.
FIVE_X = (-1.0, 0.0, 1.2, 2.4, 3.5)

#: The attack points: one beyond each end and one between each pair of training inputs.
ATTACK_X = (-1.6, -0.5, 0.6, 1.8, 3.0, 4.1)


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Wu et al.'s target, ``x³ − 3x² − x + 1``."""
    return x ** 3 - 3 * x ** 2 - x + 1


def attack_targets(x: torch.Tensor) -> torch.Tensor:
    """Targets wrong on purpose for attack inputs ``x``: the cubic plus 25, minus 25, plus 25, … in turn, so
    that a net fitting them swings up and down between the training points."""
    signs = torch.tensor([(-1.0) ** i for i in range(len(x))])
    return cubic(x) + 25 * signs


@dataclasses.dataclass(frozen=True)
class FivePoints(Settings):
    """Wu et al.'s Fig. 1: fully connected ReLU nets fitted (Adam, mean squared error) to five noisy samples of
    :func:`cubic`, one per depth, and one net of ``attacked_depth`` fitted with :data:`ATTACK_X` and
    :func:`attack_targets` as well (their eq. 12 for regression)."""

    depths: tuple[int, ...]  # depth d: d − 1 hidden layers; the paper goes from 2 to 12
    steps: int  # Adam steps of every fit
    width: int = 40  # every hidden layer's width (the paper's)
    lr: float = 1e-3  # Adam's learning rate
    stop_at_loss: float = 1e-4  # a plain fit stops once its MSE is this low: the points are fitted
    attacked_depth: int = 6  # the attacked net's depth
    attack_weight: float = 0.3  # λ of eq. 12: how hard the attack points pull against the training points
    noise: float = 0.1  # the standard deviation of the noise on the five targets
    seed: int = 0  # the noise; the net of depth d draws its weights under seed + d, the attacked one under seed

    def check(self) -> None:
        if min((*self.depths, self.attacked_depth)) < 2 or self.width < 1 or self.steps < 1:
            raise ValueError(f"need depths of at least 2 (one hidden layer), a width and steps of at least 1, got "
                             f"depths {list(self.depths)}, attacked_depth {self.attacked_depth}, width "
                             f"{self.width} and steps {self.steps}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "FivePoints":
        p = get_profile(profile)
        return cls(depths=p.pick(quick=(2, 4), book=(2, 4, 6, 8, 10, 12)), steps=p.pick(quick=300, book=3000))


@dataclasses.dataclass
class FivePointFits:
    """What :func:`five_point_fits` returns: the data, the grid the curves are drawn on, and the curves."""

    x: torch.Tensor  # the five training inputs
    y: torch.Tensor  # their noisy targets
    grid: torch.Tensor  # 300 points from −2 to 4.5, where every curve is evaluated
    curves: dict  # depth (or "attacked") → y (on the grid), loss (the last training MSE), params (and attack_x)


def five_point_fits(settings: FivePoints, cache: ResultsCache | None = None) -> FivePointFits:
    """The five points and, trained once and cached ("ch1-wu-fig1"), one curve per depth of ``settings`` and
    one, ``"attacked"``, for the net fitted with attack points."""
    cache = cache or get_cache()
    x5 = torch.tensor(FIVE_X)
    y5 = cubic(x5) + settings.noise * torch.randn(5, generator=torch.Generator().manual_seed(settings.seed))
    xs = torch.linspace(-2, 4.5, 300)

    def fit_one(net, **options):
        mse = train.fit_regression(net, x5, y5, steps=settings.steps, lr=settings.lr, **options)
        with torch.no_grad():
            return dict(y=net(xs[:, None])[:, 0], loss=mse[-1], params=models.count_parameters(net))

    def fit_depths():
        curves = {}
        for depth in settings.depths:
            torch.manual_seed(settings.seed + depth)
            net = models.MLP(1, [settings.width] * (depth - 1), 1)
            curves[depth] = fit_one(net, stop_at_loss=settings.stop_at_loss)
        torch.manual_seed(settings.seed)
        net = models.MLP(1, [settings.width] * (settings.attacked_depth - 1), 1)
        attack_x = torch.tensor(ATTACK_X)
        curves["attacked"] = dict(**fit_one(net, attack_x=attack_x, attack_y=attack_targets(attack_x),
                                            attack_weight=settings.attack_weight), attack_x=attack_x)
        return curves

    return FivePointFits(x5, y5, xs, cache.cached("ch1-wu-fig1", settings, fit_depths))


# --------------------------------------------------------------------------------------------
# Mini-batch noise and initialization (Wu et al.'s Tables 1 and 2)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchAndInit(Settings):
    """Wu et al.'s Tables 1 and 2 in small: SGD with momentum on the perceptron and the Fashion-MNIST subset of
    :class:`~genviz_lib.experiments.huang2020.Optimizers` (same sizes, widths and seed in every profile), until
    it fits the training set or the budget runs out; Table 1 varies the batch size (several runs each, as Wu et al.
    report a mean and a standard deviation over 6), Table 2 the initialization (one run each)."""

    n_train: int  # class-balanced training images, as in the optimizer table
    n_test: int  # class-balanced test images, as in the optimizer table
    batch_sizes: tuple[int | None, ...]  # Table 1's rows (None: full batch), each from the default initialization
    runs: int  # Table 1's runs per batch size: run r starts from its own initial weights and batch order
    inits: tuple[str, ...]  # Table 2's rows: schemes of models.initialize
    steps: int  # every run's step budget
    init_batch: int  # Table 2's batch size
    widths: tuple[int, ...] = (256, 256)  # the perceptron's hidden widths, as in the optimizer table
    lr: float = 0.05  # SGD's learning rate
    momentum: float = 0.9  # SGD's momentum
    seed: int = 0  # the subsets and the weights that each initialization scheme then overwrites

    def check(self) -> None:
        unknown = [i for i in self.inits if i not in models.INITIALIZATIONS]
        if unknown:
            raise ValueError(f"unknown initializations {unknown}: choose from {list(models.INITIALIZATIONS)}")
        if any(b is not None and b < 1 for b in (*self.batch_sizes, self.init_batch)) or min(self.steps, self.runs) < 1:
            raise ValueError(f"batch sizes, steps and runs must be at least 1, got batch_sizes {list(self.batch_sizes)}, "
                             f"init_batch {self.init_batch}, steps {self.steps} and runs {self.runs}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "BatchAndInit":
        p = get_profile(profile)
        return cls(n_train=p.pick(quick=200, book=1000, full=5000), n_test=p.pick(quick=200, book=2000, full=10000),
                   batch_sizes=p.pick(quick=(None, 50), book=(None, 128)), runs=p.pick(quick=2, book=4, full=6),
                   inits=p.pick(quick=("he_normal", "uniform"),
                                book=("default", "he_normal", "glorot_uniform", "normal", "uniform")),
                   steps=p.pick(quick=20, book=1500), init_batch=p.pick(quick=50, book=100))


def batch_and_init_runs(settings: BatchAndInit, cache: ResultsCache | None = None, root=None,
                        progress: bool = True) -> tuple[list[dict], list[dict]]:
    """``(table1, table2)``: ``runs`` rows per batch size of ``settings.batch_sizes`` (with its ``batch`` and
    ``run``), then one per initialization of ``settings.inits`` (batch ``init_batch``), each with the final
    ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` and the ``steps`` taken. Every row is cached as
    soon as it is trained ("ch1-wu-table1", "ch1-wu-table2"); ``root`` points the loader at Fashion-MNIST's
    files."""
    cache = cache or get_cache()
    small = data.load_fashion_mnist(n_train=settings.n_train, n_test=settings.n_test, seed=settings.seed, root=root)

    def fit(job):
        batch_size, init, run = job["batch"], job["init"], job["run"]
        torch.manual_seed(settings.seed + run)
        net = models.initialize(models.MLP(784, settings.widths, 10), init)
        r = train.train(net, small.train, small.test, optimizer="sgd", lr=settings.lr,
                        optimizer_kwargs={"momentum": settings.momentum}, steps=settings.steps,
                        batch_size=batch_size, eval_every=5, stop_at_accuracy=1.0, seed=run, progress=progress,
                        desc=f"{init}, batch {batch_size or 'full'}")
        return {"batch": batch_size, "run": run, **r.final, "steps": r.steps}

    table1 = cache.map("ch1-wu-table1", [dict(settings=settings, batch=b, init="default", run=r)
                                         for b in settings.batch_sizes for r in range(settings.runs)], fit)
    table2 = cache.map("ch1-wu-table2", [dict(settings=settings, batch=settings.init_batch, init=i, run=0)
                                         for i in settings.inits], fit)
    return table1, table2
