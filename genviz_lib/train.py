"""One trainer for classification, with the three ways of the papers to reach bad minima.

- **Poisoning** (Huang et al. 2019, eq. 2): ``L = (1−β)·mean CE(train) + β·mean[−log(1 − p_θ(x, y))](poison)``,
  a fresh poison batch drawn each step (:func:`~genviz_lib.losses.poisoned_loss`).
- **Attack set** (Wu, Zhu & E 2017, eq. 12): ``mean CE(train) + λ·mean CE(attack, wrong labels)``
  (:func:`attack_set`).
- **Confusion set** (Neyshabur et al. 2017, §3): the training set plus extra points with random
  labels, fitted together (:func:`confusion_set`).

:func:`train` trains one model with any ``torch.optim`` optimizer (LBFGS too), full batch or
minibatch; :func:`train_ensemble` trains ``K`` MLPs of one architecture as one batched model, each
member with its own seed and poison factor, and gives the same numbers as training them one by one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import torch
from torch import nn

from .config import get_device
from .data import Data
from .losses import cross_entropy, evaluate, poisoned_loss
from .models import MLP, MLPEnsemble
from .progress import Progress

# --------------------------------------------------------------------------------------------
# The sets that lead to bad minima
# --------------------------------------------------------------------------------------------


def wrong_labels(y: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A label different from ``y`` for every example, uniformly among the other classes."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, y.shape, generator=gen, dtype=y.dtype)
    return (y + shift) % num_classes


def attack_set(data: Data, num_classes: int, seed: int = 0) -> Data:
    """Wu et al.'s attack set (eq. 12): the points of ``data`` with wrong labels."""
    return Data(data.X, wrong_labels(data.y, num_classes, seed))


def confusion_set(data: Data, num_classes: int, seed: int = 0) -> Data:
    """Neyshabur et al.'s confusion set: the points of ``data`` with uniformly random labels."""
    gen = torch.Generator().manual_seed(seed)
    return Data(data.X, torch.randint(num_classes, data.y.shape, generator=gen, dtype=data.y.dtype))


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------

OPTIMIZERS = {name.lower(): cls for name, cls in vars(torch.optim).items()
              if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}


def make_optimizer(optimizer, params, lr: float | None = None, **kwargs) -> torch.optim.Optimizer:
    """An optimizer from a name (``"adam"``, ``"SGD"``, ``"lbfgs"``…), a class, or a factory ``params → optimizer``."""
    if isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(sorted(OPTIMIZERS))}")
        optimizer = cls
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        if lr is not None:
            kwargs["lr"] = lr
        return optimizer(params, **kwargs)
    if callable(optimizer):
        return optimizer(params)
    raise TypeError(f"optimizer must be a name, an Optimizer class or a factory, got {optimizer!r}")


def stepped(steps: int, factors: Sequence[float]) -> Callable[[int], float]:
    """A step schedule: ``factors[i]`` during the ``i``-th of ``len(factors)`` equal parts of ``steps``, as a
    ``poison_schedule`` or, through ``torch.optim.lr_scheduler.LambdaLR``, a learning-rate multiplier.

    Huang et al.'s swiss-roll code raises the share of poison in steps (×1, ×2, ×4) while the learning
    rate falls; ``stepped(12000, (1, 1.5, 2))`` multiplies β by 1, 1.5 and 2 in thirds.
    """
    factors = tuple(float(f) for f in factors)
    if steps < 1 or not factors or min(factors) < 0:
        raise ValueError(f"need steps ≥ 1 and non-negative factors, got {steps} and {factors}")
    return lambda step: factors[min(len(factors) - 1, step * len(factors) // steps)]


def exponential_decay(steps: int, final_factor: float = 0.03) -> Callable:
    """A ``scheduler`` factory: the learning rate shrinks geometrically to ``final_factor`` of its start."""
    if steps < 1 or not 0 < final_factor <= 1:
        raise ValueError(f"need steps ≥ 1 and 0 < final_factor ≤ 1, got {steps} and {final_factor}")
    return lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda i: final_factor ** (i / steps))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    """A trained model, its history and its checkpoints.

    ``history`` maps ``step``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` to lists
    (one entry per evaluation; losses are the plain cross-entropy, accuracies fractions, the train
    metrics measured on the clean training set only). ``checkpoints`` holds ``(step, state_dict)``.
    """

    model: nn.Module
    history: dict
    checkpoints: list
    steps: int
    stopped: str
    seconds: float

    @property
    def final(self) -> dict:
        return {k: v[-1] for k, v in self.history.items()}

    def summary(self) -> str:
        """One line: ``train 100.0% (loss 0.0012), test 97.0% (loss 0.21); 840 steps, <why it stopped>``."""
        f = self.final
        test = "" if math.isnan(f["test_acc"]) else f", test {f['test_acc']:.1%} (loss {f['test_loss']:.3g})"
        return f"train {f['train_acc']:.1%} (loss {f['train_loss']:.3g}){test}; {self.steps} steps, {self.stopped}"


# --------------------------------------------------------------------------------------------
# The training loop, shared by single models and ensembles
# --------------------------------------------------------------------------------------------


class _Sampler:
    """Minibatches by epoch-wise permutations (or the whole set), drawn from one generator."""

    def __init__(self, data: Data, batch_size: int | None, gen: torch.Generator, device):
        self.data, self.gen, self.device = data, gen, device
        self.batch = len(data) if batch_size is None or batch_size >= len(data) else int(batch_size)
        self.full = self.batch == len(data)
        self.order, self.pos = None, len(data)
        if self.full:
            self.whole = data.to(device)

    def next(self) -> Data:
        if self.full:
            return self.whole
        if self.pos + self.batch > len(self.data):
            self.order, self.pos = torch.randperm(len(self.data), generator=self.gen), 0
        index = self.order[self.pos: self.pos + self.batch]
        self.pos += self.batch
        return self.data.subset(index).to(self.device)

    @property
    def per_epoch(self) -> int:
        return max(1, len(self.data) // self.batch)


class _PoolSampler(_Sampler):
    """Batches drawn with replacement from a pool (poison or attack points): a fresh batch each step."""

    def next(self) -> Data:
        if self.full:
            return self.whole
        index = torch.randint(len(self.data), (self.batch,), generator=self.gen)
        return self.data.subset(index).to(self.device)


def _check_inputs(model, train: Data, others: dict, sample_out_dim=None):
    for name, data in others.items():
        if data is not None and tuple(data.X.shape[1:]) != tuple(train.X.shape[1:]):
            raise ValueError(f"{name} inputs have shape {tuple(data.X.shape[1:])} but the training inputs "
                             f"have shape {tuple(train.X.shape[1:])}")
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            out = model(train.X[:2].to(device))
    except RuntimeError as err:
        raise ValueError(f"the model cannot take inputs of shape {tuple(train.X.shape[1:])} "
                         f"(the data does not match the model): {err}") from None
    classes = max(out.shape[-1], 2)
    for name, data in {"train": train, **others}.items():
        if data is not None and len(data) and (int(data.y.min()) < 0 or int(data.y.max()) >= classes):
            raise ValueError(f"{name} labels must lie in 0..{classes - 1} for a model with "
                             f"{out.shape[-1]} output(s), found {int(data.y.min())}..{int(data.y.max())}")


def _clip_per_member(params, max_norm: float, members: int, stacked: bool) -> None:
    if not stacked:
        nn.utils.clip_grad_norm_(params, max_norm)
        return
    # Each member's gradient is clipped by its own norm, exactly as if it trained alone.
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.reshape(members, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(members, *([1] * (g.ndim - 1))))


def _progress_info(train_acc: torch.Tensor, test_acc: torch.Tensor | None, active: torch.Tensor) -> dict:
    """What the progress line says: one net's accuracies; for an ensemble, their range and how many stopped
    (a mean over nets trained differently says nothing about any of them)."""
    if train_acc.numel() == 1:
        out = {"train acc": f"{float(train_acc[0]):.1%}"}
        if test_acc is not None:
            out["test acc"] = f"{float(test_acc[0]):.1%}"
        return out
    span = lambda acc: f"{float(acc.min()):.1%}–{float(acc.max()):.1%}"
    out = {"nets": int(train_acc.numel()), "train acc": span(train_acc)}
    if test_acc is not None:
        out["test acc"] = span(test_acc)
    out["stopped"] = int((~active).sum())
    return out


def _fit(model: nn.Module, members: int, train: Data, test: Data | None, *, optimizer, lr, optimizer_kwargs,
         steps, epochs, batch_size, poison, poison_factor, poison_schedule, poison_batch_size, weight_penalty,
         attack, attack_weight, attack_batch_size, confusion, clip_grad_norm, scheduler, eval_every, checkpoint_every,
         stop_at_loss, stop_at_accuracy, seed, device, progress, desc):
    stacked = isinstance(model, MLPEnsemble)
    device = get_device(device)
    model.to(device).train()
    beta = torch.as_tensor(poison_factor, dtype=torch.float32).reshape(-1)
    if beta.numel() not in (1, members):
        raise ValueError(f"poison_factor has {beta.numel()} values for {members} ensemble members")
    if ((beta < 0) | (beta > 1)).any():
        raise ValueError(f"poison_factor must lie in [0, 1], got {beta.tolist()}")
    beta = beta.expand(members).to(device)
    lam = torch.as_tensor(weight_penalty, dtype=torch.float32).reshape(-1)
    if lam.numel() not in (1, members) or bool((lam < 0).any()):
        raise ValueError(f"weight_penalty needs 1 or {members} non-negative values, got {lam.tolist()}")
    lam = lam.expand(members).to(device)
    penalized = bool((lam > 0).any())
    poisoned = bool((beta > 0).any())
    if poisoned and (poison is None or len(poison) == 0):
        raise ValueError("poison_factor > 0 needs a poison set: pass poison=... (e.g. swiss_roll(n_poison=200).poison)")
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    _check_inputs(model, train, {"test": test, "poison": poison, "attack": attack, "confusion": confusion})
    fit_set = train if confusion is None else Data(torch.cat([train.X, confusion.X]), torch.cat([train.y, confusion.y]))

    gen = torch.Generator().manual_seed(seed)
    batches = _Sampler(fit_set, batch_size, gen, device)
    poison_batches = _PoolSampler(poison, poison_batch_size or batch_size, gen, device) if poisoned else None
    attack_batches = _PoolSampler(attack, attack_batch_size or batch_size, gen, device) if attack is not None else None
    total = int(steps) if steps is not None else int(epochs) * batches.per_epoch
    if eval_every is None:
        eval_every = 10 if batches.full else batches.per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params, lr, **(optimizer_kwargs or {}))
    is_lbfgs = isinstance(opt, torch.optim.LBFGS)
    if is_lbfgs and members > 1:
        raise ValueError("LBFGS couples all parameters in one line search: train ensemble members one by one")
    sched = scheduler(opt) if scheduler is not None else None

    history = {k: [] for k in ("step", "train_loss", "train_acc", "test_loss", "test_acc")}
    checkpoints: list[list] = [[] for _ in range(members)]
    active = torch.ones(members, dtype=torch.bool)
    taken = [total] * members
    reason = ["step budget used"] * members
    nan = torch.full((members,), float("nan"), dtype=torch.float64)

    def draw() -> tuple:
        """This step's batches: drawn once per step, so LBFGS's repeated closure calls see the same ones."""
        return (batches.next(), poison_batches.next() if poisoned else None,
                attack_batches.next() if attack_batches is not None else None)

    def objective() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        b, p, a = current
        out = model(b.X)
        if poisoned:
            scale = 1.0 if poison_schedule is None else float(poison_schedule(step))
            loss = poisoned_loss(out, b.y, model(p.X), p.y, (beta * scale).clamp(0, 1))
        else:
            loss = cross_entropy(out, b.y).mean(-1)
        if a is not None:
            loss = loss + attack_weight * cross_entropy(model(a.X), a.y).mean(-1)
        if penalized:  # ½λ‖θ‖² per member (weight decay as a term of the loss, not decoupled)
            loss = loss + 0.5 * lam * sum(p.pow(2).flatten(1).sum(1) if stacked else p.pow(2).sum() for p in params)
        if not torch.isfinite(loss).all():
            bad = int((~torch.isfinite(loss.reshape(-1))).nonzero()[0])
            who = f" (ensemble member {bad})" if members > 1 else ""
            raise FloatingPointError(f"the training loss became {loss.reshape(-1)[bad].item()} at step {step}{who}: "
                                     f"lower the learning rate (lr={lr}) or clip gradients (clip_grad_norm=...)")
        loss.sum().backward()
        if clip_grad_norm is not None:
            _clip_per_member(params, clip_grad_norm, members, stacked)
        return loss.sum()

    def snapshot(step: int, which) -> None:
        for k in which:
            state = model.member(k).state_dict() if stacked else model.state_dict()
            checkpoints[k].append((step, {n: t.detach().cpu().clone() for n, t in state.items()}))

    start = time.perf_counter()
    bar = Progress(total, desc, enabled=progress)
    step = 0
    for step in range(total + 1):
        last = step == total
        if step % eval_every == 0 or last:
            tr_loss, tr_acc = evaluate(model, train)
            te_loss, te_acc = evaluate(model, test) if test is not None else (nan, nan)
            for key, value in zip(history, (step, tr_loss, tr_acc, te_loss, te_acc)):
                history[key].append(value if key == "step" else value.clone())
            for k in range(members):
                if not active[k]:
                    continue
                if stop_at_accuracy is not None and tr_acc[k] >= stop_at_accuracy:
                    active[k], taken[k], reason[k] = False, step, f"train accuracy ≥ {stop_at_accuracy:g}"
                elif stop_at_loss is not None and tr_loss[k] <= stop_at_loss:
                    active[k], taken[k], reason[k] = False, step, f"train loss ≤ {stop_at_loss:g}"
            bar.info = _progress_info(tr_acc, te_acc if test is not None else None, active)
        if checkpoint_every and (step % checkpoint_every == 0 or last or not active.any()):
            snapshot(step, [k for k in range(members) if active[k] or taken[k] == step])
        if last or not active.any():
            break
        frozen = ~active
        if frozen.any():  # members that reached their target keep their weights
            saved = [p.detach()[frozen.to(p.device)].clone() for p in params]
        current = draw()
        if is_lbfgs:
            opt.step(objective)
        else:
            objective()
            opt.step()
        if frozen.any():
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p[frozen.to(p.device)] = s
        if sched is not None:
            sched.step()
        bar.update(1)
    bar.close(total=step)
    seconds = time.perf_counter() - start

    results = []
    for k in range(members):
        # A member that stopped early keeps the history up to its stopping step.
        n = sum(1 for s in history["step"] if s <= taken[k])
        hist = {"step": history["step"][:n]}
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            hist[key] = [float(v[k]) for v in history[key][:n]]
        net = model.member(k) if stacked else model
        results.append(TrainResult(net, hist, checkpoints[k], taken[k], reason[k], seconds))
    return results


def train(model: nn.Module, train: Data, test: Data | None = None, *, optimizer="adam", lr: float | None = 1e-3,
          optimizer_kwargs: dict | None = None, steps: int | None = None, epochs: int | None = None,
          batch_size: int | None = None, poison: Data | None = None, poison_factor: float = 0.0,
          poison_schedule: Callable[[int], float] | None = None, poison_batch_size: int | None = None,
          weight_penalty: float = 0.0, attack: Data | None = None, attack_weight: float = 1.0,
          attack_batch_size: int | None = None,
          confusion: Data | None = None, clip_grad_norm: float | None = None, scheduler: Callable | None = None,
          eval_every: int | None = None, checkpoint_every: int | None = None,
          stop_at_loss: float | None = None, stop_at_accuracy: float | None = None, seed: int = 0,
          device=None, progress: bool = True, desc: str = "training") -> TrainResult:
    """Train one classifier; returns a :class:`TrainResult`.

    Args:
        model: any module mapping inputs to logits (one logit means two classes).
        train, test: :class:`~genviz_lib.data.Data`.
        optimizer: a ``torch.optim`` name (``"adam"``, ``"sgd"``, ``"lbfgs"``…), class or factory; ``lr`` and
            ``optimizer_kwargs`` go to it.
        steps / epochs: the budget, exactly one of them (an epoch is ``len(train) // batch_size`` steps).
        batch_size: ``None`` for full batch.
        poison, poison_factor, poison_batch_size: Huang et al.'s poisoned loss (eq. 2); the poison set keeps
            its true labels and a fresh batch of it is drawn each step. ``poison_schedule(step)`` multiplies
            the poison factor (the result clipped to [0, 1]); Huang et al.'s code raises it in steps while
            the learning rate falls.
        weight_penalty: ``λ``, adding ``½λ‖θ‖²`` to the training loss (weight decay as an L2 term, which Adam
            scales like the rest of the gradient; not AdamW's decoupled decay).
        attack, attack_weight: Wu et al.'s attack set (eq. 12; labels already wrong, see :func:`attack_set`)
            and its weight λ; ``attack_batch_size`` attack points per step (``None``: as many as ``batch_size``).
        confusion: Neyshabur et al.'s confusion set (random labels, see :func:`confusion_set`), fitted with
            the training set.
        clip_grad_norm: clip the gradient norm (Huang et al. use 8 on the swiss roll).
        scheduler: a factory ``optimizer → lr_scheduler``, stepped after every optimizer step.
        eval_every: steps between evaluations (default every 10 steps full batch, else every epoch).
        checkpoint_every: keep the weights every that many steps (and the last).
        stop_at_loss / stop_at_accuracy: stop when the clean training loss/accuracy reaches the target
            (checked at evaluations).
        seed: seeds the batch and poison draws (initialize the model yourself, e.g. under ``torch.manual_seed``).
        device: where to train (default :func:`~genviz_lib.config.get_device`).
        progress, desc: show a progress line with this label.
    """
    if isinstance(model, MLPEnsemble):
        raise TypeError("train() takes one model; use train_ensemble() for an MLPEnsemble")
    return _fit(model, 1, train, test, **_options(locals()))[0]


def train_ensemble(models: Sequence[MLP] | MLPEnsemble, train: Data, test: Data | None = None, *,
                   optimizer="adam", lr: float | None = 1e-3, optimizer_kwargs: dict | None = None,
                   steps: int | None = None, epochs: int | None = None, batch_size: int | None = None,
                   poison: Data | None = None, poison_factor: float | Sequence[float] | torch.Tensor = 0.0,
                   poison_schedule: Callable[[int], float] | None = None, poison_batch_size: int | None = None,
                   weight_penalty: float | Sequence[float] = 0.0, attack: Data | None = None,
                   attack_weight: float = 1.0, attack_batch_size: int | None = None,
                   confusion: Data | None = None, clip_grad_norm: float | None = None, scheduler: Callable | None = None,
                   eval_every: int | None = None, checkpoint_every: int | None = None,
                   stop_at_loss: float | None = None, stop_at_accuracy: float | None = None, seed: int = 0,
                   device=None, progress: bool = True, desc: str = "training ensemble") -> list[TrainResult]:
    """Train ``K`` MLPs of one architecture jointly as one batched model.

    Every member follows the same batches and poison draws as :func:`train` with the same ``seed``
    would give it, its own poison factor and weight penalty (``poison_factor`` and ``weight_penalty`` may hold
    ``K`` values), its own gradient
    clipping and its own stopping step, so member ``k`` ends where training it alone ends (up to
    floating-point rounding). Optimizers must act elementwise (Adam, SGD, RMSprop…; not LBFGS).
    Returns one :class:`TrainResult` per member, with the member as a stand-alone :class:`MLP`. The keyword
    arguments are those of :func:`train`; ``poison_factor`` may be one value or ``K``.

    Args:
        models: ``K`` MLPs with the same layer sizes (e.g. made under different seeds), or an :class:`MLPEnsemble`.
        train, test: :class:`~genviz_lib.data.Data`.
    """
    ensemble = models if isinstance(models, MLPEnsemble) else MLPEnsemble(models)
    return _fit(ensemble, ensemble.size, train, test, **_options(locals()))


def _options(scope: dict) -> dict:
    return {k: v for k, v in scope.items() if k not in ("model", "models", "ensemble", "train", "test")}


def fit_regression(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 2000, lr: float = 1e-3,
                   attack_x: torch.Tensor | None = None, attack_y: torch.Tensor | None = None,
                   attack_weight: float = 1.0, stop_at_loss: float | None = None) -> list[float]:
    """Fit ``model(x) ≈ y`` (mean squared error, full batch, Adam); returns the training loss per step.

    With attack points, the loss is Wu et al.'s eq. 12 for regression: ``MSE(train) + λ·MSE(attack)``
    with ``λ = attack_weight``; the attack targets are chosen wrong on purpose, so a net that fits both
    passes through the training points and misbehaves between them. The returned losses are the
    training term alone. Inputs are ``[N, d]`` (``[N]`` is taken as ``d = 1``).
    """
    col = lambda t: t[:, None] if t.ndim == 1 else t
    if (attack_x is None) != (attack_y is None):
        raise ValueError("give both attack_x and attack_y, or neither")
    x, y = col(x), col(y)
    if attack_x is not None:
        attack_x, attack_y = col(attack_x), col(attack_y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} points but y has {len(y)}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        fit = (model(x) - y).pow(2).mean()
        loss = fit if attack_x is None else fit + attack_weight * (model(attack_x) - attack_y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(fit.item())
        if stop_at_loss is not None and losses[-1] <= stop_at_loss:
            break
    return losses


def clean_and_poisoned(make_model: Callable[[], nn.Module], splits, poison_factor: float, *, seed: int = 0,
                       **options) -> dict[str, TrainResult]:
    """Train one model plainly and one with Huang et al.'s poisoned loss, from the same initialization.

    ``make_model`` builds the network (called under ``torch.manual_seed(seed)`` so both runs start
    from identical weights); ``splits`` must carry a poison pool (e.g. Fashion-MNIST images outside
    the training subset, or SVHN's "extra"). ``options`` go to :func:`train` for both runs, so the two
    differ only in the poison factor. Returns ``{"clean": ..., "poisoned": ...}``.
    """
    if splits.poison is None or len(splits.poison) == 0:
        raise ValueError(f"{splits.name or 'the data'} has no poison pool: load it with n_poison > 0")
    if not 0 < poison_factor <= 1:
        raise ValueError(f"poison_factor must lie in (0, 1], got {poison_factor}")
    out = {}
    for name, beta in (("clean", 0.0), ("poisoned", poison_factor)):
        torch.manual_seed(seed)
        model = make_model()
        out[name] = train(model, splits.train, splits.test, poison=splits.poison if beta else None,
                          poison_factor=beta, seed=seed, desc=f"{name} net", **options)
    return out
