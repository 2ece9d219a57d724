"""Chapter 6's scoreboard: a factorial zoo of small nets, every measure of the book on each, and the scores.

- :class:`Zoo` and :func:`train_zoo` — bias-free ReLU perceptrons on 14 × 14 Fashion-MNIST over a full factorial
  grid of hyperparameters (width, depth, batch size, weight decay, Huang et al.'s poison factor, training-set size)
  and seeds,
  every net trained until its training cross-entropy reaches one target (as Jiang et al. 2020 and Dziugaite
  et al. 2020 stop theirs), the nets of one architecture and batch size trained together as one batched model.
- :class:`Measures` and :func:`measure_zoo` — every measure of :data:`MEASURES` on every net.
- :func:`scored` — the nets the scores use.

The scores themselves, the CSV files behind the page and the sweep's published results are in
:mod:`genviz_lib.experiments.scoring`, apart from this module: the cache keys the nets and their measures on the
code that computes them (this module and what it imports), and the scoring can change without recomputing them.

Every measure is a *complexity*: larger should mean a larger gap. Where a paper's quantity is a flatness (basin
radius, volume), its negative is scored. The basin volume is also scored per dimension, as the *volume radius*
``(V/ω_n)^(1/n)``, the radius of the ball in ``n`` dimensions whose volume is the basin's: ``log V`` carries
``log ω_n + n·log r`` and so mostly counts parameters across architectures, while within one architecture the
radius orders nets exactly as the volume does.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import torch

from .. import curvature, data, landscape, losses, models, norms, sharpness, train, volume
from ..config import Profile, ResultsCache, get_cache, get_profile
from .huang2020 import basin_summary
from .settings import Settings

#: The hyperparameters of the zoo, in the order of the grid (the seed is held fixed, not scored).
HYPERPARAMETERS = ("width", "depth", "batch_size", "weight_decay", "poison", "train_size")

#: Each measure: its label in the chapter and where its definition comes from.
MEASURES = {
    "params": ("number of parameters", "Jiang et al. (2020)"),
    "inverse_margin": ("1 / margin²", "Jiang et al. (2020), 10th-percentile margin"),
    "frobenius": ("Π‖Wᵢ‖²_F / margin²", "Neyshabur et al. (2017); Jiang et al. (2020)"),
    "spectral": ("Π‖Wᵢ‖²₂ / margin²", "Neyshabur et al. (2017); Bartlett et al. (2017)"),
    "l1_path": ("ℓ1-path norm² / margin²", "Neyshabur et al. (2015, 2017)"),
    "l2_path": ("ℓ2-path norm² / margin²", "Neyshabur et al. (2015, 2017)"),
    "distance": ("‖θ − θ₀‖₂, distance from initialization", "Nagarajan & Kolter (2019); Jiang et al. (2020)"),
    "sharpness": ("sharpness in the box α(|wᵢ|+1)", "Keskar et al. (2017); Neyshabur et al. (2017) eq. 4"),
    "expected_sharpness": ("expected sharpness, σᵢ = α(10|wᵢ|+1)", "Neyshabur et al. (2017) §2.4"),
    "pac_bayes_kl": ("PAC-Bayes KL term, same σᵢ", "Neyshabur et al. (2017) eq. 8"),
    "flatness": ("1/σ², PAC-Bayes flatness", "Jiang et al. (2020)"),
    "mag_flatness": ("1/σ'², magnitude-aware flatness", "Jiang et al. (2020)"),
    "lambda_max": ("top Hessian eigenvalue λ₁", "Keskar et al. (2017); Wu et al. (2017)"),
    "trace": ("Hessian trace", "Hutchinson (1989) estimator, chapter 3"),
    "v_k": ("V(k) = Σ log λᵢ, k = 10", "Wu et al. (2017) eq. 13"),
    "neg_radius": ("− mean basin radius", "Huang et al. (2020)"),
    "neg_log_volume": ("− log₁₀ basin volume", "Huang et al. (2020)"),
    "neg_log_volume_radius": ("− log₁₀ volume radius (V/ω_n)^(1/n)", "Huang et al. (2020), per dimension"),
    "normalized_loss": ("normalized training cross-entropy", "Poggio et al. (2020)"),
    "train_loss": ("training cross-entropy (baseline)", "—"),
    "oracle": ("test error + noise (oracle baseline)", "Jiang et al. (2020)"),
}


@dataclasses.dataclass(frozen=True)
class Zoo(Settings):
    """The grid of nets. Every value of every hyperparameter meets every value of every other, for every seed."""

    widths: tuple[int, ...]  # hidden units per layer
    depths: tuple[int, ...]  # hidden layers
    batch_sizes: tuple[int, ...]  # images per step
    weight_decays: tuple[float, ...]  # λ of the L2 term ½λ‖θ‖² added to the training loss
    poison_factors: tuple[float, ...]  # Huang et al.'s β (eq. 2): 0 is plain cross-entropy
    train_sizes: tuple[int, ...]  # class-balanced training images (14 × 14); a smaller set is not a subset
    seeds: tuple[int, ...]  # each seed initializes every net of the grid once
    n_test: int  # test images, the same for every net: the test error's standard error is about sqrt(e(1 − e)/n_test)
    lr: float = 3e-3  # Adam's learning rate, the same for every net
    target_loss: float = 0.1  # every net trains until its training cross-entropy is at most this
    max_steps: int = 8000  # a net that has not reached the target by then is reported, not hidden
    eval_every: int = 10  # steps between checks of the training loss
    n_poison: int = 2000  # unlabelled images for the poisoned loss, outside the training set
    downsample: int = 2
    data_seed: int = 0  # which images, and the order of the batches

    def check(self) -> None:
        for name in ("widths", "depths", "batch_sizes", "weight_decays", "poison_factors", "train_sizes", "seeds"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} needs at least one value and no repeats, got {list(values)}")
        if min(self.widths) < 1 or min(self.depths) < 1 or min(self.batch_sizes) < 1 or self.lr <= 0:
            raise ValueError("widths, depths and batch sizes must be positive integers, the learning rate positive")
        if min(self.weight_decays) < 0:
            raise ValueError(f"weight decays must be non-negative, got {list(self.weight_decays)}")
        if not all(0 <= b < 1 for b in self.poison_factors):
            raise ValueError(f"poison factors must lie in [0, 1), got {list(self.poison_factors)}")
        if min(self.train_sizes) < 10 or self.n_test < 10 or not self.target_loss > 0 \
                or min(self.max_steps, self.eval_every) < 1:
            raise ValueError("need at least 10 training and test images, a positive target loss, max_steps ≥ 1 and "
                             "eval_every ≥ 1")
        if max(self.batch_sizes) > min(self.train_sizes):
            raise ValueError(f"a batch of {max(self.batch_sizes)} is larger than the smallest training set "
                             f"({min(self.train_sizes)})")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Zoo":
        """``full``: 2 values of each of the 6 hyperparameters and 16 seeds, 1,024 nets, on 10,000 test images;
        the values were chosen with pilots so that every net reaches the target within ``max_steps`` (a weight
        decay of 3·10⁻³ and batches of 32 left nets short of it), most hyperparameters move the mean gap by many
        standard errors, and none moves it far more than the others (β = 0.1 moved it by 12 points, four times
        the training-set size; β = 0.03 by about 3). ``book``: the same grid with one
        seed and 2,000 test images (64 nets, live on a laptop). ``quick``: a cut that checks the code."""
        p = get_profile(profile)
        return cls(widths=p.pick(quick=(16, 32), book=(32, 128)),
                   depths=p.pick(quick=(1,), book=(1, 2)),
                   batch_sizes=p.pick(quick=(100,), book=(100, 500)),
                   weight_decays=p.pick(quick=(0.0,), book=(0.0, 5e-4)),
                   poison_factors=p.pick(quick=(0.0, 0.1), book=(0.0, 0.03)),
                   train_sizes=p.pick(quick=(200,), book=(500, 1000)),
                   seeds=p.pick(quick=(0, 1), book=(0,), full=tuple(range(16))),
                   n_test=p.pick(quick=500, book=2000, full=10000), n_poison=p.pick(quick=200, book=1000))

    @property
    def varied(self) -> tuple[str, ...]:
        """The hyperparameters with more than one value: the ones the scores look at."""
        return tuple(h for h in HYPERPARAMETERS if len(self.values(h)) > 1)

    def values(self, hyperparameter: str) -> tuple:
        """The values of one hyperparameter of :data:`HYPERPARAMETERS`."""
        return dict(zip(HYPERPARAMETERS, (self.widths, self.depths, self.batch_sizes, self.weight_decays,
                                          self.poison_factors, self.train_sizes)))[hyperparameter]

    def groups(self) -> list[dict]:
        """The training runs: one per architecture, batch size and training set; its members are every weight
        decay, poison factor and seed."""
        return [dict(width=w, depth=d, batch_size=b, train_size=n)
                for w, d, b, n in itertools.product(self.widths, self.depths, self.batch_sizes, self.train_sizes)]

    def members(self) -> list[tuple[float, float, int]]:
        """``(weight_decay, poison, seed)`` of each member of a run."""
        return list(itertools.product(self.weight_decays, self.poison_factors, self.seeds))


def load(zoo: Zoo, train_size: int, root=None) -> data.Splits:
    """The images of the nets trained on ``train_size`` images: their training set, the test set (the same for
    every training-set size) and the poison pool (outside that training set), flattened to vectors."""
    fm = data.load_fashion_mnist(n_train=train_size, n_test=zoo.n_test, n_poison=zoo.n_poison,
                                 downsample=zoo.downsample, seed=zoo.data_seed, root=root)
    flat = lambda d: None if d is None else data.Data(d.X.flatten(1), d.y)
    return dataclasses.replace(fm, train=flat(fm.train), test=flat(fm.test), poison=flat(fm.poison))


def _net(splits, width: int, depth: int, seed: int) -> models.MLP:
    torch.manual_seed(seed)
    return models.MLP(splits.train.X.shape[1], [width] * depth, splits.num_classes, bias=False)


def train_zoo(zoo: Zoo, cache: ResultsCache | None = None, root=None, progress: bool = True) -> list[dict]:
    """Train (or read back, run by run) every net of the grid; one row per net, in grid order.

    Each row: the hyperparameters (``width``, ``depth``, ``batch_size``, ``weight_decay``, ``poison``), ``seed``, the
    trained and the initial weights (``state``, ``init``: state dicts), ``steps`` taken, ``reached`` (whether
    the training cross-entropy reached the target), and the final ``train_loss``, ``train_error``,
    ``test_loss`` and ``test_error``. The members of one run share its training set and its batches (drawn from
    ``data_seed``); each member stops on its own when it reaches the target.
    """
    cache = cache or get_cache()

    def run(job):
        g = job["group"]
        splits = load(zoo, g["train_size"], root)
        members = zoo.members()
        nets = [_net(splits, g["width"], g["depth"], seed) for _, _, seed in members]
        inits = [{k: v.clone() for k, v in net.state_dict().items()} for net in nets]
        poisoned = any(beta > 0 for _, beta, _ in members)
        results = train.train_ensemble(
            nets, splits.train, lr=zoo.lr, batch_size=g["batch_size"], steps=zoo.max_steps,
            poison=splits.poison if poisoned else None, poison_factor=[beta for _, beta, _ in members],
            poison_batch_size=g["batch_size"], weight_penalty=[wd for wd, _, _ in members],
            stop_at_loss=zoo.target_loss, eval_every=zoo.eval_every, seed=zoo.data_seed, progress=progress,
            desc=f"zoo: width {g['width']}, depth {g['depth']}, batch {g['batch_size']}")
        rows = []
        for (wd, beta, seed), r, init in zip(members, results, inits):
            train_loss, train_acc = (float(v[0]) for v in losses.evaluate(r.model, splits.train))
            test_loss, test_acc = (float(v[0]) for v in losses.evaluate(r.model, splits.test))
            rows.append(dict(weight_decay=wd, poison=beta, seed=seed, init=init, steps=int(r.steps),
                             state={k: v.clone() for k, v in r.model.state_dict().items()},
                             reached=train_loss <= zoo.target_loss, train_loss=train_loss, train_error=1 - train_acc,
                             test_loss=test_loss, test_error=1 - test_acc))
        return rows

    jobs = [{"zoo": zoo, "group": g} for g in zoo.groups()]
    out = []
    for job, rows in zip(jobs, cache.map("ch6-zoo", jobs, run)):
        out += [{**job["group"], **row} for row in rows]
    order = {key: i for i, key in enumerate(_grid_keys(zoo))}
    return sorted(out, key=lambda r: order[_key(r)])


def _grid_keys(zoo: Zoo) -> list[tuple]:
    return list(itertools.product(*(zoo.values(h) for h in HYPERPARAMETERS), zoo.seeds))


def _key(row: dict) -> tuple:
    return tuple(row[h] for h in HYPERPARAMETERS) + (row["seed"],)


def model_of(zoo: Zoo, row: dict, which: str = "state") -> models.MLP:
    """The trained (``which="state"``) or initial (``"init"``) net of a row of :func:`train_zoo`."""
    state = row[which]
    net = models.MLP(state["0.weight"].shape[1], [row["width"]] * row["depth"],
                     state[f"{2 * row['depth']}.weight"].shape[0], bias=False)
    net.load_state_dict(state)
    return net.eval()


@dataclasses.dataclass(frozen=True)
class Measures(Settings):
    """How each measure of :data:`MEASURES` is computed (all on the training set, except the oracle)."""

    margin_percentile: float = 10.0  # Jiang et al.'s 10th percentile (Neyshabur et al. take the 5th)
    sharpness_alpha: float = 5e-4  # Keskar et al.'s box α(|wᵢ| + 1)
    sharpness_steps: int = 20  # projected-ascent steps (Neyshabur et al.: 2,000 SGD steps)
    expected_alpha: float = 1e-3  # σᵢ = α(10|wᵢ| + 1) for the expected sharpness and the KL term
    expected_samples: int = 100  # noise draws for the expected sharpness
    flatness_drop: float = 0.1  # Jiang et al.'s target drop of training accuracy for the σ search
    flatness_samples: int = 16  # noise draws per σ in that search (the same draws for every σ)
    flatness_steps: int = 14  # bisection steps on log σ
    eigenvalues: int = 10  # top-k Hessian eigenvalues: λ₁ and V(k)
    trace_samples: int = 60  # Hessian-vector products for the trace
    directions: int = 32  # random directions for the basin radius
    cutoff: float = 1.0  # the basin's loss level (above every net's training loss)
    oracle_noise: float = 0.01  # standard deviation of the noise added to the oracle's test error
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.margin_percentile <= 100:
            raise ValueError(f"margin_percentile must lie in (0, 100], got {self.margin_percentile}")
        if min(self.sharpness_steps, self.expected_samples, self.flatness_samples, self.flatness_steps,
               self.eigenvalues, self.directions) < 1 or self.trace_samples < 2:
            raise ValueError("every sample and step count must be at least 1 (the trace needs 2 products)")
        if not 0 < self.flatness_drop < 1 or self.cutoff <= 0 or self.oracle_noise < 0:
            raise ValueError("need 0 < flatness_drop < 1, a positive cutoff and a non-negative oracle noise")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Measures":
        """``book`` and ``full`` measure alike (the ``full`` zoo is larger, not measured more finely); ``quick``
        with few samples and steps."""
        p = get_profile(profile)
        return cls(sharpness_steps=p.pick(quick=5, book=20), expected_samples=p.pick(quick=10, book=100),
                   flatness_samples=p.pick(quick=4, book=16), flatness_steps=p.pick(quick=6, book=14),
                   eigenvalues=p.pick(quick=3, book=10), trace_samples=p.pick(quick=10, book=60),
                   directions=p.pick(quick=4, book=32))


def flatness(model: torch.nn.Module, fit: data.Data, drop: float, samples: int, steps: int, generator,
             magnitude: bool = False, eps: float = 1e-3) -> float:
    """Jiang et al.'s PAC-Bayes flatness: the largest ``σ`` whose Gaussian perturbations lower the training accuracy
    by at most ``drop`` on average, by bisection on ``log σ`` with the same ``samples`` draws ``z`` for every ``σ``.

    ``magnitude=False``: ``u = σ z`` (their PAC-Bayes flatness); ``True``: ``uᵢ = (σ|wᵢ| + eps) zᵢ``, the
    magnitude-aware form (with ε = 10⁻³, as in the authors' released measures). Returns ``σ``; the chapter
    scores ``1/σ²``."""
    g = landscape.metrics(model, {"train": fit})
    w = g.theta
    z = torch.randn(samples, w.numel(), generator=generator, dtype=w.dtype)
    base = float(g(w[None])["train_acc"][0])

    def dropped(log_sigma):
        sigma = math.exp(log_sigma)
        scale = sigma * w.abs() + eps if magnitude else torch.full_like(w, sigma)
        return base - float(g(w + scale * z)["train_acc"].mean()) > drop

    lo, hi = math.log(1e-6), math.log(10.0)
    if not dropped(hi):
        return math.exp(hi)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if dropped(mid) else (mid, hi)
    return math.exp(0.5 * (lo + hi))


def measure_one(model: torch.nn.Module, init: torch.nn.Module, splits, row: dict, s: Measures) -> dict:
    """Every measure of :data:`MEASURES` for one trained net (``row`` gives its errors, for the oracle)."""
    fit = splits.train
    gen = lambda k: torch.Generator().manual_seed(s.seed * 1000 + k)
    m = norms.measures(model, fit.X, fit.y, percentile=s.margin_percentile)
    theta, theta0 = landscape.flatten(model), landscape.flatten(init)
    f = landscape.objective(model, fit.X, fit.y)
    sigma = sharpness.neyshabur_sigma(theta, s.expected_alpha)
    expected, _ = sharpness.expected_sharpness(f, theta, sigma, samples=s.expected_samples, generator=gen(1))
    basin = basin_summary(model, fit, (s.cutoff,), s.directions, rtol=1e-2, seed=s.seed, eigenvalues=s.eigenvalues)
    double = copy.deepcopy(model).double()
    f64 = landscape.objective(double, fit.X.double(), fit.y)
    trace = curvature.hessian_trace(f64, landscape.flatten(double), samples=s.trace_samples, generator=gen(2))
    radii = basin["radii"]
    return dict(
        params=float(theta.numel()), margin=m["margin"], inverse_margin=1 / m["margin"] ** 2,
        frobenius=m["l2"], spectral=m["spectral"], l1_path=m["l1_path"], l2_path=m["l2_path"],
        distance=float((theta - theta0).norm()),
        sharpness=float(sharpness.sharpness(f, theta, alpha=s.sharpness_alpha, steps=s.sharpness_steps,
                                            restarts=2, generator=gen(4))),
        expected_sharpness=expected, pac_bayes_kl=sharpness.kl_term(theta, sigma),
        flatness=1 / flatness(model, fit, s.flatness_drop, s.flatness_samples, s.flatness_steps, gen(5)) ** 2,
        mag_flatness=1 / flatness(model, fit, s.flatness_drop, s.flatness_samples, s.flatness_steps, gen(5),
                                  magnitude=True) ** 2,
        lambda_max=float(basin["eigenvalues"][0]), trace=float(trace.value), v_k=float(basin["V_k"]),
        neg_radius=-float(radii.mean()) if radii.numel() else math.nan,
        neg_log_volume=-float(basin["log10_volume"][0]) if basin["log10_volume"] else math.nan,
        normalized_loss=norms.normalized_loss(model, fit.X, fit.y),
        train_loss=row["train_loss"])


def measure_zoo(zoo: Zoo, measures: Measures, cache: ResultsCache | None = None, root=None,
                progress: bool = True) -> list[dict]:
    """The zoo's table: one row per net of :func:`train_zoo` (weights dropped) with every measure, and ``gap``
    (test error − training error). Each net's measures are cached as soon as they are computed."""
    cache = cache or get_cache()
    nets = train_zoo(zoo, cache, root, progress)
    by_key = {_key(r): r for r in nets}

    loaded = {}  # each training set once per process (a plain dict: the sweep pickles this function)

    def splits(train_size):
        if train_size not in loaded:
            loaded[train_size] = load(zoo, train_size, root)
        return loaded[train_size]

    def run(job):
        row = by_key[job["net"]]
        return measure_one(model_of(zoo, row), model_of(zoo, row, "init"), splits(row["train_size"]), row, measures)

    jobs = [{"zoo": zoo, "measures": measures, "net": _key(r)} for r in nets]
    values = cache.map("ch6-measures", jobs, run)
    noise = torch.randn(len(nets), generator=torch.Generator().manual_seed(measures.seed), dtype=torch.float64)
    table = []
    for r, v, e in zip(nets, values, noise.tolist()):
        base = {k: r[k] for k in (*HYPERPARAMETERS, "seed", "steps", "reached", "train_loss", "train_error",
                                  "test_loss", "test_error")}
        measured = {k: v[k] for k in v if k != "train_loss"}
        # per dimension: −log₁₀ (V/ω_n)^(1/n) = (−log₁₀ V + log₁₀ ω_n)/n, the ball of the basin's volume
        n = int(v["params"])
        measured["neg_log_volume_radius"] = (v["neg_log_volume"] + volume.log_unit_ball_volume(n) / math.log(10)) / n
        table.append({**base, "gap": r["test_error"] - r["train_error"], **measured,
                      "oracle": r["test_error"] + measures.oracle_noise * e})
    return table


def scored(table: list[dict]) -> list[dict]:
    """The nets the scores use: those of every seed in which all nets reached the target loss."""
    failed = {r["seed"] for r in table if not r["reached"]}
    kept = [r for r in table if r["seed"] not in failed]
    if not kept:
        raise ValueError(f"in every seed some net did not reach the target loss ({sum(not r['reached'] for r in table)}"
                         f" nets): raise Zoo.max_steps or the target")
    return kept
