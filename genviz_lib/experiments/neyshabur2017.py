"""Neyshabur et al. (2017), *Exploring Generalization in Deep Learning*: the recipes of chapter 3's sharpness
and PAC-Bayes measurements.

- :func:`bicriteria_runs` — their Fig. 2: perceptrons fitted to Fashion-MNIST with true and with random labels,
  for several training-set sizes, and for each the expected sharpness and the KL term of the PAC-Bayes bound as
  the noise scale α varies (:func:`~genviz_lib.sharpness.bicriteria`).

The recipe takes its settings (``Bicriteria.for_profile(profile)``) and a results cache; called again with the
same settings, it reads its results back, net by net.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from .. import data, landscape, models, sharpness, train
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
