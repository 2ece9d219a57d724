"""Experiments that several chapters share, so that each runs (and is cached) once.

:func:`swiss_roll_minimizers` is the book's recipe for good and bad minimizers on Huang et al.'s
swiss roll: one network per poison factor, all from the same initialization, trained as one batched
model. Chapter 2 introduces it; chapters 3 and 4 measure the minimizers it returns. Calling it with
the same settings and cache gives the cached nets back instead of training again.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch

from . import curvature, data, landscape, losses, models, norms, train, volume
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


_LOADERS = {"fashion": data.load_fashion_mnist, "svhn": data.load_svhn, "cifar10": data.load_cifar10}


def _load(dataset: str, root=None, **sizes) -> data.Splits:
    """The image data set of an experiment's settings (``root``: where its files are, for stand-in files)."""
    if dataset not in _LOADERS:
        raise ValueError(f"dataset must be one of {sorted(_LOADERS)}, got {dataset!r}")
    return _LOADERS[dataset](**sizes, **({"root": root} if root is not None else {}))


def image_minimizers(settings: dict, cache: ResultsCache | None = None, root=None,
                     progress: bool = True) -> tuple[data.Splits, dict]:
    """The data and ``{"clean": ..., "poisoned": ...}`` (see :func:`~genviz_lib.train.clean_and_poisoned`),
    trained once and cached; ``root`` points the SVHN loader at its files."""
    splits = _load(settings["dataset"], root, n_train=settings["n_train"], n_test=settings["n_test"],
                   n_poison=settings["n_poison"], seed=settings["seed"])
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


# --------------------------------------------------------------------------------------------
# Chapter 5: Poggio et al.'s family of minimizers and their normalized losses
# --------------------------------------------------------------------------------------------

#: The initialization standard deviations of Poggio et al.'s Fig. 2 (their appendix B).
POGGIO_INIT_STDS = (0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001, 0.0016, 0.0032,
                    0.0064, 0.0128, 0.0256, 0.0512, 0.06, 0.07, 0.08, 0.09, 0.1, 0.1024, 0.11, 0.12, 0.14)

#: The layer norms chapter 5 normalizes by (Poggio et al.'s Fig. 9), by name.
LAYER_NORMS = {"L1": 1.0, "L2": 2.0, "L∞": math.inf}


def normalized_settings(profile: str | Profile | None = None) -> dict:
    """Poggio et al.'s experiment for a profile: bias-free ReLU nets trained to the same low training loss.

    ``quick``/``book``: an MLP (784-256-256-10 in ``book``) on standardized Fashion-MNIST subsets, Adam 1e-3,
    full batch. ``full``: their Fig. 2 setting, :func:`~genviz_lib.models.poggio_convnet` on all of CIFAR-10,
    their 25 initialization scales, SGD (lr 0.01 → 0.001 → 0.0001 in quarters; momentum 0.9, which they do not
    state) on batches of 128 for up to 200 epochs (30 epochs of pretraining). Every net stops at the first
    evaluation where its training loss is at most ``target_loss`` (their Fig. 5 picks the snapshot nearest to a
    reference loss). ``init_stds``: one net per scale; ``corrupted``: one net pretrained on labels of which that
    fraction is replaced by random ones, from ``N(0, pretrain_std²)``; one net on random labels from
    ``N(0, random_label_std²)`` (their red point). ``sizes`` × ``size_stds``: nets for the gap against the
    training-set size (their Fig. 19); ``track_*``: one net whose checkpoints are measured during training.
    """
    p = get_profile(profile)
    epoch = 50000 // 128
    return dict(dataset=p.pick(quick="fashion", book="fashion", full="cifar10"),
                net=p.pick(quick="mlp", book="mlp", full="conv"), widths=p.pick(quick=(64, 64), book=(256, 256)),
                channels=64, n_train=p.pick(quick=200, book=1000, full=None),
                n_test=p.pick(quick=500, book=5000, full=None),
                init_stds=p.pick(quick=(0.01, 0.1), book=(0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.14),
                                 full=POGGIO_INIT_STDS),
                corrupted=p.pick(quick=(0.0, 1.0), book=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
                pretrain_std=0.05, random_label_std=0.1,
                optimizer=p.pick(quick="adam", book="adam", full="sgd"), lr=p.pick(quick=1e-3, book=1e-3, full=0.01),
                lr_factors=p.pick(quick=(1,), book=(1,), full=(1, 1, 0.1, 0.01)),
                batch=p.pick(quick=None, book=None, full=128),
                steps=p.pick(quick=300, book=3000, full=200 * epoch),
                pretrain_steps=p.pick(quick=60, book=400, full=30 * epoch), target_loss=0.01,
                sizes=p.pick(quick=(100, 200), book=(250, 500, 1000, 2000, 4000), full=(1000, 3000, 10000, 50000)),
                size_stds=p.pick(quick=(0.01, 0.1), book=(0.01, 0.05, 0.1)),
                track_std=0.01, track_steps=p.pick(quick=60, book=600, full=100 * epoch),
                track_every=p.pick(quick=10, book=10, full=epoch), seed=0)


def _normalized_splits(settings: dict, n_train, root=None) -> data.Splits:
    return data.standardize(_load(settings["dataset"], root, n_train=n_train, n_test=settings["n_test"],
                                  seed=settings["seed"]))


def _normalized_net(settings: dict, splits: data.Splits, std: float, seed: int) -> torch.nn.Module:
    X = splits.train.X
    if settings["net"] == "mlp":
        net = models.MLP(X[0].numel(), settings["widths"], splits.num_classes, bias=False)
    elif settings["net"] == "conv":
        net = models.poggio_convnet(settings["channels"], X.shape[1], X.shape[-1], splits.num_classes)
    else:
        raise ValueError(f"net must be 'mlp' or 'conv', got {settings['net']!r}")
    return models.initialize(net, "normal", scale=std, seed=seed)


def _to_target(nets: list, fit: data.Data, settings: dict, steps: int, desc: str, progress: bool,
               test: data.Data | None = None, **extra) -> list:
    """Train ``nets`` on ``fit`` until each reaches the target loss (MLPs as one ensemble, others one by one)."""
    factors = settings["lr_factors"]
    options = dict(optimizer=settings["optimizer"], lr=settings["lr"], steps=steps, batch_size=settings["batch"],
                   stop_at_loss=settings["target_loss"], progress=progress,
                   scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, train.stepped(steps, factors)),
                   **extra)
    if settings["optimizer"] == "sgd":
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


def normalized_family(settings: dict, cache: ResultsCache | None = None, root=None, progress: bool = True) -> Family:
    """Train (or read back) Poggio et al.'s family: one net per initialization scale, one per corrupted fraction
    of pretraining labels (then trained on the true labels), and one on random labels, all to the same target
    training loss. Each group (or, for conv nets, each net) is cached as soon as it is trained."""
    if not settings["init_stds"] or min(settings["init_stds"]) <= 0:
        raise ValueError(f"need positive initialization scales, got {settings['init_stds']}")
    if any(not 0 <= c <= 1 for c in settings["corrupted"]):
        raise ValueError(f"corrupted fractions must lie in [0, 1], got {settings['corrupted']}")
    cache = cache or get_cache()
    splits = _normalized_splits(settings, settings["n_train"], root)
    seed, k = settings["seed"], splits.num_classes
    shuffled = dataclasses.replace(
        splits, train=data.Data(splits.train.X, data.corrupt_labels(splits.train.y, 1.0, k, seed + 1)[0]),
        test=data.Data(splits.test.X, data.corrupt_labels(splits.test.y, 1.0, k, seed + 2)[0]))
    base = {key: v for key, v in settings.items() if not key.startswith(("size", "track"))}

    def init_group(stds):
        nets = [_normalized_net(settings, splits, s, seed + settings["init_stds"].index(s)) for s in stds]
        return _to_target(nets, splits.train, settings, settings["steps"], "initialization scales", progress)

    groups = [list(settings["init_stds"])] if settings["net"] == "mlp" else [[s] for s in settings["init_stds"]]
    runs = [r for rs in cache.map("normalized-init", [dict(base, stds=g) for g in groups],
                                  lambda c: init_group(c["stds"])) for r in rs]
    members = [dict(group="init", value=s, label=f"σ = {s:g}", run=r) for s, r in zip(settings["init_stds"], runs)]

    def pretrained(j, fraction):
        net = _normalized_net(settings, splits, settings["pretrain_std"], seed + 100 + j)
        labels = data.corrupt_labels(splits.train.y, fraction, k, seed + 100 + j)[0]
        first = _to_target([net], data.Data(splits.train.X, labels), settings, settings["pretrain_steps"],
                           f"pretraining, {fraction:.0%} corrupted", progress)[0]
        first = dataclasses.replace(first, model=copy.deepcopy(first.model))
        return first, _to_target([net], splits.train, settings, settings["steps"], "true labels", progress)[0]

    pre = cache.map("normalized-pretrain", [dict(base, fraction=c, index=j) for j, c in enumerate(settings["corrupted"])],
                    lambda c: pretrained(c["index"], c["fraction"]))
    members += [dict(group="pretrain", value=c, label=f"{c:.0%} corrupted", run=r, pretrain=p)
                for c, (p, r) in zip(settings["corrupted"], pre)]

    def random_net():
        net = _normalized_net(settings, splits, settings["random_label_std"], seed + 200)
        return _to_target([net], shuffled.train, settings, settings["steps"], "random labels", progress)[0]

    members.append(dict(group="random", value=settings["random_label_std"], label="random labels",
                        run=cache.cached("normalized-random", base, random_net)))
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


def normalized_trajectory(settings: dict, cache: ResultsCache | None = None, root=None,
                          progress: bool = True) -> list[dict]:
    """One net of the family's architecture (scale ``track_std``) trained for ``track_steps`` with no stopping
    target, measured every ``track_every`` steps: one row per checkpoint with ``step``, plain ``train_loss``,
    ``test_loss``, ``train_acc``, ``test_acc``, the normalized (L2) ``train_normalized``, ``test_normalized`` and
    ``rho``."""
    cache = cache or get_cache()
    splits = _normalized_splits(settings, settings["n_train"], root)
    config = {key: v for key, v in settings.items() if not key.startswith(("size", "init", "corrupt"))}

    def run():
        net = _normalized_net(settings, splits, settings["track_std"], settings["seed"] + 300)
        result = _to_target([net], splits.train, dict(settings, target_loss=None), settings["track_steps"],
                            "tracked net", progress, checkpoint_every=settings["track_every"])[0]
        rows = []
        for step, state in result.checkpoints:
            net.load_state_dict(state)
            rows.append(dict(step=step, rho=norms.frobenius_product(net), **_plain_and_normalized(net, splits)))
        return rows

    return cache.cached("normalized-trajectory", config, run)


def normalized_gap_sweep(settings: dict, cache: ResultsCache | None = None, root=None,
                         progress: bool = True) -> list[dict]:
    """Poggio et al.'s Fig. 19: for each training-set size of ``sizes``, one net per scale of ``size_stds`` trained
    to the target loss; one row per net with ``n``, ``std``, ``train_acc``, ``test_acc``, plain ``train_loss`` and
    ``test_loss``, normalized (L2) ``train_normalized`` and ``test_normalized``. Cached per size."""
    if min(settings["sizes"]) < 10:
        raise ValueError(f"training-set sizes must be at least 10, got {settings['sizes']}")
    cache = cache or get_cache()
    config = {key: v for key, v in settings.items() if not key.startswith(("init", "corrupt", "track"))}

    def at_size(n):
        splits = _normalized_splits(settings, n, root)
        nets = [_normalized_net(settings, splits, s, settings["seed"] + 400 + i)
                for i, s in enumerate(settings["size_stds"])]
        runs = _to_target(nets, splits.train, settings, settings["steps"], f"{n} training examples", progress)
        rows = []
        for s, r in zip(settings["size_stds"], runs):
            rows.append(dict(n=n, std=s, steps=r.steps, **_plain_and_normalized(r.model, splits)))
        return rows

    per_size = cache.map("normalized-gap", [dict(config, n=n) for n in settings["sizes"]], lambda c: at_size(c["n"]))
    return [row for rows in per_size for row in rows]
