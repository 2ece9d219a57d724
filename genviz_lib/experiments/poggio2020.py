"""Poggio et al. (2020), the normalized loss: a family of minimizers fitted to the same low training loss,
and how their losses look once each net is divided by the product of its layer norms.

- :func:`normalized_family` — one net per initialization scale, one per fraction of corrupted pretraining
  labels, one on random labels (their Fig. 2); :meth:`Family.measure` normalizes them (Fig. 2, Fig. 9).
- :func:`normalized_gap_sweep` — the normalized generalization gap against the training-set size (Fig. 19).
- :func:`normalized_trajectory` — one net measured during training.
- :func:`homogeneity_convnet` — a bias-free conv net for chapter 5's homogeneity check;
  :func:`size_and_width_sweeps` — chapter 1's test accuracy against the training-set size and the width.

The first three take one :class:`Normalized` settings object; each caches on the part of it that it uses.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math

import torch

from .. import data, losses, models, norms, train
from ..config import Profile, ResultsCache, get_cache, get_profile
from .settings import Settings

#: The initialization standard deviations of Poggio et al.'s Fig. 2 (their appendix B).
POGGIO_INIT_STDS = (0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001, 0.0016, 0.0032,
                    0.0064, 0.0128, 0.0256, 0.0512, 0.06, 0.07, 0.08, 0.09, 0.1, 0.1024, 0.11, 0.12, 0.14)

#: The layer norms chapter 5 normalizes by (Poggio et al.'s Fig. 9), by name.
LAYER_NORMS = {"L1": 1.0, "L2": 2.0, "L∞": math.inf}

_EPOCH = 50000 // 128  # CIFAR-10 steps per epoch at batch 128, the unit of the full profile's budgets


@dataclasses.dataclass(frozen=True)
class Training(Settings):
    """How every net of the experiment is built and trained: bias-free ReLU nets (homogeneous, so that they
    factor into a scale and a direction), each trained until its training loss reaches ``target_loss``."""

    dataset: str  # "fashion" (standardized subsets) on a CPU; "cifar10" is the paper's
    net: str  # "mlp" (bias-free MLP) or "conv" (Poggio et al.'s bias-free conv net)
    widths: tuple[int, ...]  # the MLP's hidden widths
    n_train: int | None  # training images (None: all)
    n_test: int | None  # test images (None: all)
    optimizer: str  # "adam" (full batch); "sgd" with momentum 0.9 (the paper does not state it) on CIFAR
    lr: float  # the starting learning rate
    lr_factors: tuple[float, ...]  # the learning rate times these in equal parts of the budget (0.01 → 0.0001)
    batch: int | None  # batch size (None: full batch)
    steps: int  # the budget; a net stops earlier, at the first evaluation with loss ≤ target_loss
    channels: int = 64  # the conv net's filters per layer
    target_loss: float | None = 0.01  # the common training loss every net stops at (their Fig. 5 picks such snapshots)
    seed: int = 0  # the subsets; each net's weights are seeded from it plus an offset of its own

    def check(self) -> None:
        if self.net not in ("mlp", "conv"):
            raise ValueError(f"net must be 'mlp' or 'conv', got {self.net!r}")
        if self.dataset not in data.IMAGE_DATASETS:
            raise ValueError(f"dataset must be one of {sorted(data.IMAGE_DATASETS)}, got {self.dataset!r}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Training":
        p = get_profile(profile)
        return cls(dataset=p.pick(quick="fashion", book="fashion", full="cifar10"),
                   net=p.pick(quick="mlp", book="mlp", full="conv"), widths=p.pick(quick=(64, 64), book=(256, 256)),
                   n_train=p.pick(quick=200, book=1000, full=None), n_test=p.pick(quick=500, book=5000, full=None),
                   optimizer=p.pick(quick="adam", book="adam", full="sgd"), lr=p.pick(quick=1e-3, book=1e-3, full=0.01),
                   lr_factors=p.pick(quick=(1,), book=(1,), full=(1, 1, 0.1, 0.01)),
                   batch=p.pick(quick=None, book=None, full=128), steps=p.pick(quick=300, book=3000, full=200 * _EPOCH))


@dataclasses.dataclass(frozen=True)
class Normalized(Settings):
    """Poggio et al.'s experiment for a profile. ``quick``/``book``: an MLP (784-256-256-10 in ``book``) on
    standardized Fashion-MNIST subsets, Adam 1e-3, full batch. ``full``: their Fig. 2 setting,
    :func:`~genviz_lib.models.poggio_convnet` on all of CIFAR-10, their 25 initialization scales, SGD
    (lr 0.01 → 0.001 → 0.0001 in quarters) on batches of 128 for up to 200 epochs (30 of pretraining)."""

    training: Training  # how each net is built and trained
    init_stds: tuple[float, ...]  # one net per initialization scale: the scale sets how far training moves ρ
    corrupted: tuple[float, ...]  # one net per fraction of random labels in its pretraining, then true labels
    pretrain_steps: int  # the pretraining budget (it too stops at the target loss)
    sizes: tuple[int, ...]  # training-set sizes of the gap sweep (their Fig. 19)
    size_stds: tuple[float, ...]  # the scales trained at each size
    track_steps: int  # the tracked net trains this long, with no target
    track_every: int  # and is measured every that many steps
    pretrain_std: float = 0.05  # the pretrained nets' initialization scale
    random_label_std: float = 0.1  # the random-label net's scale (their red point)
    track_std: float = 0.01  # the tracked net's scale

    def check(self) -> None:
        if not self.init_stds or min(self.init_stds) <= 0:
            raise ValueError(f"need positive initialization scales, got {list(self.init_stds)}")
        if any(not 0 <= c <= 1 for c in self.corrupted):
            raise ValueError(f"corrupted fractions must lie in [0, 1], got {list(self.corrupted)}")
        if self.sizes and min(self.sizes) < 10:
            raise ValueError(f"training-set sizes must be at least 10, got {list(self.sizes)}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "Normalized":
        p = get_profile(profile)
        return cls(training=Training.for_profile(p),
                   init_stds=p.pick(quick=(0.01, 0.1), book=(0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.14),
                                    full=POGGIO_INIT_STDS),
                   corrupted=p.pick(quick=(0.0, 1.0), book=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
                   pretrain_steps=p.pick(quick=60, book=400, full=30 * _EPOCH),
                   sizes=p.pick(quick=(100, 200), book=(250, 500, 1000, 2000, 4000), full=(1000, 3000, 10000, 50000)),
                   size_stds=p.pick(quick=(0.01, 0.1), book=(0.01, 0.05, 0.1)),
                   track_steps=p.pick(quick=60, book=600, full=100 * _EPOCH),
                   track_every=p.pick(quick=10, book=10, full=_EPOCH))


def _splits(t: Training, n_train, root=None) -> data.Splits:
    return data.standardize(data.load(t.dataset, n_train=n_train, n_test=t.n_test, seed=t.seed, root=root))


def _net(t: Training, splits: data.Splits, std: float, seed: int) -> torch.nn.Module:
    X = splits.train.X
    if t.net == "mlp":
        net = models.MLP(X[0].numel(), t.widths, splits.num_classes, bias=False)
    else:
        net = models.poggio_convnet(t.channels, X.shape[1], X.shape[-1], splits.num_classes)
    return models.initialize(net, "normal", scale=std, seed=seed)


def _to_target(nets: list, fit: data.Data, t: Training, steps: int, desc: str, progress: bool,
               test: data.Data | None = None, **extra) -> list:
    """Train ``nets`` on ``fit`` until each reaches the target loss (MLPs as one ensemble, others one by one)."""
    factors = t.lr_factors
    options = dict(optimizer=t.optimizer, lr=t.lr, steps=steps, batch_size=t.batch, stop_at_loss=t.target_loss,
                   progress=progress,
                   scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, train.stepped(steps, factors)),
                   **extra)
    if t.optimizer == "sgd":
        options["optimizer_kwargs"] = dict(momentum=0.9)
    if len(nets) > 1 and all(isinstance(n, models.MLP) for n in nets):
        return train.train_ensemble(nets, fit, test, desc=desc, **options)
    return [train.train(n, fit, test, desc=f"{desc} ({i + 1}/{len(nets)})", **options) for i, n in enumerate(nets)]


@dataclasses.dataclass
class Family:
    """Nets of one architecture fitted to one training set by :func:`normalized_family`.

    ``splits``: the standardized data; ``shuffled``: the same inputs with random labels (train and test), the
    random-label net's data. ``members``: one dict per net with ``group`` (``"init"``, ``"pretrain"`` or
    ``"random"``), ``value`` (the initialization scale or the corrupted fraction), ``label``, ``run`` (its
    :class:`~genviz_lib.train.TrainResult`) and, for pretrained nets, ``pretrain`` (the pretraining run).
    """

    splits: data.Splits
    shuffled: data.Splits
    members: list

    def data_of(self, member: dict) -> data.Splits:
        return self.shuffled if member["group"] == "random" else self.splits

    def measure(self, layer_norms: dict | None = None) -> list[dict]:
        """One row per net, all in float64: ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss`` (plain
        cross-entropy), ``frobenius`` (``Π‖W_i‖_F``) and for each norm ``q`` of ``layer_norms`` (default
        :data:`LAYER_NORMS`): ``rho_q``, ``scale_q`` and the normalized losses ``train_q``, ``test_q`` of
        ``scale_q · f̃``. ``scale_q`` is one constant for the whole family (Poggio et al.'s ``R``): the median of
        ``ρ_q / ρ_L2`` over the nets, so that every norm's outputs have about the size of the L2-normalized ones
        (1 for L2). Pretrained nets also have ``pretrain_test_acc`` (test accuracy when pretraining ended)."""
        layer_norms = LAYER_NORMS if layer_norms is None else layer_norms
        frobenius = [norms.frobenius_product(m["run"].model) for m in self.members]
        rhos = {name: [float(norms.layer_norms(m["run"].model, q).prod()) for m in self.members]
                for name, q in layer_norms.items()}
        scales = {name: float(torch.tensor([r / f for r, f in zip(rhos[name], frobenius)]).median())
                  for name in layer_norms}
        rows = []
        for i, m in enumerate(self.members):
            d, model = self.data_of(m), m["run"].model
            wide = copy.deepcopy(model).double()
            row = dict(group=m["group"], value=m["value"], label=m["label"], steps=m["run"].steps,
                       frobenius=frobenius[i])
            for name in layer_norms:
                row[f"rho_{name}"], row[f"scale_{name}"] = rhos[name][i], scales[name]
            for split in ("train", "test"):
                part = getattr(d, split)
                loss, acc = losses.evaluate(wide, data.Data(part.X.double(), part.y))
                row[f"{split}_loss"], row[f"{split}_acc"] = float(loss[0]), float(acc[0])
                for name, q in layer_norms.items():
                    row[f"{split}_{name}"] = norms.normalized_loss(model, part.X, part.y, q, scale=scales[name])
            if m.get("pretrain") is not None:
                row["pretrain_test_acc"] = float(losses.evaluate(m["pretrain"].model, self.splits.test)[1][0])
            rows.append(row)
        return rows


def normalized_family(settings: Normalized, cache: ResultsCache | None = None, root=None,
                      progress: bool = True) -> Family:
    """Train (or read back) Poggio et al.'s family: one net per initialization scale, one per corrupted fraction
    of pretraining labels (then trained on the true labels), and one on random labels, all to the same target
    training loss. Each group (or, for conv nets, each net) is cached as soon as it is trained, keyed on the
    training recipe and what makes that group."""
    cache = cache or get_cache()
    t = settings.training
    splits = _splits(t, t.n_train, root)
    seed, k = t.seed, splits.num_classes
    shuffled = dataclasses.replace(
        splits, train=data.Data(splits.train.X, data.corrupt_labels(splits.train.y, 1.0, k, seed + 1)[0]),
        test=data.Data(splits.test.X, data.corrupt_labels(splits.test.y, 1.0, k, seed + 2)[0]))

    def init_group(stds, offsets):
        nets = [_net(t, splits, s, seed + o) for s, o in zip(stds, offsets)]
        return _to_target(nets, splits.train, t, t.steps, "initialization scales", progress)

    indices = list(range(len(settings.init_stds)))
    groups = [indices] if t.net == "mlp" else [[i] for i in indices]  # an MLP group trains as one ensemble
    jobs = [dict(training=t, stds=[settings.init_stds[i] for i in g], seed_offsets=g) for g in groups]
    runs = [r for rs in cache.map("normalized-init", jobs, lambda job: init_group(job["stds"], job["seed_offsets"]))
            for r in rs]
    members = [dict(group="init", value=s, label=f"σ = {s:g}", run=r) for s, r in zip(settings.init_stds, runs)]

    def pretrained(j, fraction):
        net = _net(t, splits, settings.pretrain_std, seed + 100 + j)
        labels = data.corrupt_labels(splits.train.y, fraction, k, seed + 100 + j)[0]
        first = _to_target([net], data.Data(splits.train.X, labels), t, settings.pretrain_steps,
                           f"pretraining, {fraction:.0%} corrupted", progress)[0]
        first = dataclasses.replace(first, model=copy.deepcopy(first.model))
        return first, _to_target([net], splits.train, t, t.steps, "true labels", progress)[0]

    jobs = [dict(training=t, std=settings.pretrain_std, pretrain_steps=settings.pretrain_steps, fraction=c, index=j)
            for j, c in enumerate(settings.corrupted)]
    pre = cache.map("normalized-pretrain", jobs, lambda job: pretrained(job["index"], job["fraction"]))
    members += [dict(group="pretrain", value=c, label=f"{c:.0%} corrupted", run=r, pretrain=p)
                for c, (p, r) in zip(settings.corrupted, pre)]

    def random_net():
        net = _net(t, splits, settings.random_label_std, seed + 200)
        return _to_target([net], shuffled.train, t, t.steps, "random labels", progress)[0]

    members.append(dict(group="random", value=settings.random_label_std, label="random labels",
                        run=cache.cached("normalized-random", dict(training=t, std=settings.random_label_std),
                                         random_net)))
    return Family(splits, shuffled, members)


def _plain_and_normalized(net: torch.nn.Module, splits: data.Splits) -> dict:
    """``train_/test_`` ``loss``, ``acc`` (plain) and ``normalized`` (L2, float64) of ``net``."""
    out = {}
    for split in ("train", "test"):
        part = getattr(splits, split)
        loss, acc = losses.evaluate(net, part)
        out.update({f"{split}_loss": float(loss[0]), f"{split}_acc": float(acc[0]),
                    f"{split}_normalized": norms.normalized_loss(net, part.X, part.y)})
    return out


def normalized_trajectory(settings: Normalized, cache: ResultsCache | None = None, root=None,
                          progress: bool = True) -> list[dict]:
    """One net of the family's architecture (scale ``track_std``) trained for ``track_steps`` with no stopping
    target, measured every ``track_every`` steps: one row per checkpoint with ``step``, plain ``train_loss``,
    ``test_loss``, ``train_acc``, ``test_acc``, the normalized (L2) ``train_normalized``, ``test_normalized`` and
    ``rho``."""
    cache = cache or get_cache()
    t = settings.training
    splits = _splits(t, t.n_train, root)

    def run():
        net = _net(t, splits, settings.track_std, t.seed + 300)
        result = _to_target([net], splits.train, t.replace(target_loss=None), settings.track_steps,
                            "tracked net", progress, checkpoint_every=settings.track_every)[0]
        rows = []
        for step, state in result.checkpoints:
            net.load_state_dict(state)
            rows.append(dict(step=step, rho=norms.frobenius_product(net), **_plain_and_normalized(net, splits)))
        return rows

    job = dict(training=t, std=settings.track_std, steps=settings.track_steps, every=settings.track_every)
    return cache.cached("normalized-trajectory", job, run)


def normalized_gap_sweep(settings: Normalized, cache: ResultsCache | None = None, root=None,
                         progress: bool = True) -> list[dict]:
    """Poggio et al.'s Fig. 19: for each training-set size of ``sizes``, one net per scale of ``size_stds`` trained
    to the target loss; one row per net with ``n``, ``std``, ``train_acc``, ``test_acc``, plain ``train_loss`` and
    ``test_loss``, normalized (L2) ``train_normalized`` and ``test_normalized``. Cached per size."""
    cache = cache or get_cache()
    t = settings.training

    def at_size(n):
        splits = _splits(t, n, root)
        nets = [_net(t, splits, s, t.seed + 400 + i) for i, s in enumerate(settings.size_stds)]
        runs = _to_target(nets, splits.train, t, t.steps, f"{n} training examples", progress)
        return [dict(n=n, std=s, steps=r.steps, **_plain_and_normalized(r.model, splits))
                for s, r in zip(settings.size_stds, runs)]

    jobs = [dict(training=t, stds=settings.size_stds, n=n) for n in settings.sizes]
    per_size = cache.map("normalized-gap", jobs, lambda job: at_size(job["n"]))
    return [row for rows in per_size for row in rows]


# --------------------------------------------------------------------------------------------
# The gap against the training-set size and the width (chapter 1)
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SizeAndWidth(Settings):
    """Poggio et al.'s Figs. 1 and 3 in small: a two-hidden-layer perceptron (with biases, Adam, full batch) on
    14×14 Fashion-MNIST, trained until it fits the training set or the budget runs out — once per training-set
    size at one width, and once per width on one training set."""

    sizes: tuple[int, ...]  # training-set sizes of the first sweep: the gap should shrink as they grow
    widths: tuple[int, ...]  # hidden widths of the second sweep, far past the width that fits the data
    n_train_widths: int  # the training images every net of the width sweep fits
    n_test: int  # class-balanced test images
    steps: int  # the step budget of every net
    size_width: int = 256  # the hidden width of every net of the size sweep
    lr: float = 1e-3  # Adam's learning rate
    seed: int = 0  # the subsets and every net's initial weights

    def check(self) -> None:
        if min((*self.sizes, self.n_train_widths, self.n_test)) < 10:
            raise ValueError(f"every set needs at least 10 images (one per class), got sizes {list(self.sizes)}, "
                             f"n_train_widths {self.n_train_widths} and n_test {self.n_test}")
        if min((*self.widths, self.size_width)) < 1 or self.steps < 1:
            raise ValueError(f"widths and steps must be at least 1, got widths {list(self.widths)}, size_width "
                             f"{self.size_width} and steps {self.steps}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "SizeAndWidth":
        p = get_profile(profile)
        return cls(sizes=p.pick(quick=(100, 200), book=(125, 250, 500, 1000, 2000, 4000)),
                   widths=p.pick(quick=(8, 64), book=(4, 8, 16, 32, 64, 128, 256, 512, 1024)),
                   n_train_widths=p.pick(quick=200, book=1000), n_test=p.pick(quick=200, book=2000),
                   steps=p.pick(quick=60, book=800))


def size_and_width_sweeps(settings: SizeAndWidth, cache: ResultsCache | None = None, root=None,
                          progress: bool = True) -> tuple[list[dict], list[dict]]:
    """``(by_size, by_width)``: one row per size of ``sizes`` (width ``size_width``), then one per width of
    ``widths`` (``n_train_widths`` images), each with the final ``train_acc``, ``test_acc``, ``train_loss``,
    ``test_loss`` and the net's ``params``. Every row is cached as soon as it is trained ("ch1-poggio-size",
    "ch1-poggio-width"); ``root`` points the loader at Fashion-MNIST's files."""
    cache = cache or get_cache()

    @functools.cache  # the width sweep's nets share one training set: read it once, and only if one trains
    def subset(n):
        return data.load_fashion_mnist(n_train=n, n_test=settings.n_test, seed=settings.seed, downsample=2, root=root)

    def fit(job):
        n, width = job["n"], job["width"]
        fmn = subset(n)
        torch.manual_seed(settings.seed)
        net = models.MLP(fmn.train.X[0].numel(), [width] * 2, 10)
        r = train.train(net, fmn.train, fmn.test, lr=settings.lr, steps=settings.steps, stop_at_accuracy=1.0,
                        eval_every=10, progress=progress, desc=f"n={n}, width {width}")
        return {**r.final, "params": models.count_parameters(net)}

    by_size = cache.map("ch1-poggio-size", [dict(settings=settings, n=n, width=settings.size_width)
                                            for n in settings.sizes], fit)
    by_width = cache.map("ch1-poggio-width", [dict(settings=settings, n=settings.n_train_widths, width=w)
                                              for w in settings.widths], fit)
    return by_size, by_width


# --------------------------------------------------------------------------------------------
# Homogeneity of a conv net (chapter 5)
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HomogeneityConv(Settings):
    """A small bias-free conv net in the style of Poggio et al.'s appendix — 5×5 convolutions of stride 2, then
    one dense layer — trained briefly on the family's data, so that chapter 5 checks ``f = ρ f̃`` on a
    convolutional net as well as on the family's own."""

    training: Training  # the data: the same dataset, subsets and standardization as the family's
    steps: int  # Adam steps: the check needs a trained net, not a good one
    channels: tuple[int, ...] = (16, 16)  # filters per convolution (Poggio et al.'s Fig. 2 net has 64)
    kernel_size: int = 5  # the convolutions' kernel, as in their net
    lr: float = 1e-3  # Adam's learning rate
    batch: int = 100  # minibatch size
    seed: int = 0  # the initialization (under torch.manual_seed) and the batches

    def check(self) -> None:
        if self.steps < 1 or not self.channels:
            raise ValueError(f"need at least one step and one convolution, got {self.steps} and "
                             f"{list(self.channels)}")

    @classmethod
    def for_profile(cls, profile: str | Profile | None = None) -> "HomogeneityConv":
        p = get_profile(profile)
        return cls(training=Training.for_profile(p), steps=p.pick(quick=20, book=200))


def homogeneity_convnet(settings: HomogeneityConv, cache: ResultsCache | None = None, root=None,
                        progress: bool = True) -> train.TrainResult:
    """Train (or read back from the cache) the conv net of ``settings`` on the standardized training set of
    ``settings.training``; returns its :class:`~genviz_lib.train.TrainResult` (no test set: only the weights
    matter to the check)."""
    cache = cache or get_cache()
    splits = _splits(settings.training, settings.training.n_train, root)

    def fit():
        torch.manual_seed(settings.seed)
        X = splits.train.X
        net = models.SmallCNN(settings.channels, X.shape[1], splits.num_classes, X.shape[-1], bias=False,
                              kernel_size=settings.kernel_size)
        return train.train(net, splits.train, None, lr=settings.lr, steps=settings.steps, batch_size=settings.batch,
                           eval_every=50, seed=settings.seed, progress=progress, desc="conv net")

    return cache.cached("normalized-homogeneity-conv", settings, fit)
