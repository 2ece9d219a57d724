"""Loss landscapes as batched objectives over flat parameter vectors.

Every geometric measure of the book works on an *objective* ``f(Θ) → losses`` with ``Θ: [b, n]``
(``b`` parameter vectors, each flat) and a point ``θ: [n]``. :func:`objective` turns a model and data
into one (``torch.func.functional_call`` under ``vmap``, chunked to bound memory), so the same code
measures a ResNet or a quadratic whose answer is known.

Directions follow Li et al. (2018): :func:`filter_normalized_direction` rescales a Gaussian direction
filter by filter (row by row for a dense layer) to the norms of the weights, and gives biases and
BatchNorm parameters a zero direction; :func:`filter_normalized_plane` draws two of them spanning a plane,
and :func:`moved` is a copy of a net moved along a direction. Slices (:func:`slice_1d`, :func:`slice_2d`) evaluate
``θ + a·d₁ + b·d₂`` on grids that contain the origin exactly; :func:`filter_normalized_slices` draws a
plane and takes a 1-D slice and 2-D slices of several sizes on it.
"""

from __future__ import annotations

import copy
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from .data import Data
from .losses import class_logits, cross_entropy

Objective = Callable[[torch.Tensor], torch.Tensor]


def parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters in the order :func:`flatten` uses."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def flatten(model: nn.Module) -> torch.Tensor:
    """All trainable parameters as one flat vector ``θ: [n]`` (a copy)."""
    return torch.cat([p.detach().reshape(-1) for _, p in parameters(model)])


def unflatten(model: nn.Module, theta: torch.Tensor) -> nn.Module:
    """Write a flat vector into the model's parameters (in place); returns the model."""
    params = parameters(model)
    n = sum(p.numel() for _, p in params)
    if theta.shape != (n,):
        raise ValueError(f"θ has shape {tuple(theta.shape)} but the model has {n} parameters")
    with torch.no_grad():
        offset = 0
        for _, p in params:
            p.copy_(theta[offset: offset + p.numel()].view_as(p))
            offset += p.numel()
    return model


def _split(model: nn.Module, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, p in parameters(model):
        out[name] = theta[offset: offset + p.numel()].view(p.shape)
        offset += p.numel()
    return out


def _per_example_losses(kind):
    if callable(kind):
        return kind
    if kind == "ce":
        return cross_entropy
    if kind == "mse":
        return lambda out, y: (out - y).pow(2).flatten(1).sum(1)
    raise ValueError(f"unknown loss {kind!r}: use 'ce', 'mse' or a function (outputs, labels) → per-example losses")


class ModelObjective:
    """``f(Θ) → [b]`` mean losses of ``model`` at the parameter vectors ``Θ: [b, n]`` on ``(X, y)``.

    Evaluated with ``functional_call``, ``chunk`` parameter vectors at a time, ``data_chunk`` examples at
    a time. ``strategy="vmap"`` runs the vectors of a chunk together under ``vmap``: much faster than a
    loop for dense nets. On a CPU, ``vmap`` turns a convolution with batched weights into a grouped
    convolution, which is several times *slower* than one plain convolution per vector; so
    ``strategy="loop"`` evaluates one vector at a time (as fast as writing the vector into the model and
    calling it, without touching the model), and ``"auto"`` (the default) picks it for models with
    convolutions on a CPU. BatchNorm and dropout run in eval mode unless
    ``train_mode=True``. A 1-D ``θ: [n]`` gives a scalar. ``f.n`` is the number of parameters and
    ``f.theta`` the model's own parameters.
    """

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss="ce", chunk: int = 256,
                 data_chunk: int | None = None, train_mode: bool = False, strategy: str = "auto"):
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} examples but y has {len(y)} labels")
        if strategy not in ("auto", "vmap", "loop"):
            raise ValueError(f"strategy must be 'auto', 'vmap' or 'loop', got {strategy!r}")
        self.model, self.loss = model, _per_example_losses(loss)
        device = next(model.parameters()).device
        if strategy == "auto":
            convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
            strategy = "loop" if convolutional and device.type == "cpu" else "vmap"
        self.strategy = strategy
        self.X, self.y = X.to(device), y.to(device)
        self.chunk, self.train_mode = chunk, train_mode
        self.data_chunk = data_chunk or len(X)
        self.theta = flatten(model)
        self.n = self.theta.numel()
        self.buffers = dict(model.named_buffers())
        try:
            with torch.no_grad():
                self(self.theta[None])
        except RuntimeError as err:
            raise ValueError(f"the model cannot take inputs of shape {tuple(X.shape[1:])}: {err}") from None

    def _outputs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (_split(self.model, theta), self.buffers), (X,))

    def per_example(self, Theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example losses ``[b, N]`` and the outputs ``[b, N, C]`` (all of ``X`` in one pass)."""
        if self.strategy == "vmap":
            outputs = vmap(lambda t: self._outputs(t, X))(Theta)
        else:
            outputs = torch.stack([self._outputs(t, X) for t in Theta])
        return self.loss(outputs, y), outputs

    def map_chunks(self, Theta: torch.Tensor, fn: Callable[[torch.Tensor], object]) -> list:
        """``[fn(T) for T in chunks of Θ]`` with the model in the objective's mode (restored afterwards)."""
        if Theta.ndim != 2 or Theta.shape[-1] != self.n:
            raise ValueError(f"Θ has {Theta.shape[-1]} columns but the model has {self.n} parameters")
        was_training = self.model.training
        self.model.train(self.train_mode)
        try:
            return [fn(T) for T in Theta.split(self.chunk)]
        finally:
            self.model.train(was_training)

    def data_chunks(self):
        """The data as ``(X, y)`` pieces of at most ``data_chunk`` examples."""
        return zip(self.X.split(self.data_chunk), self.y.split(self.data_chunk))

    def _mean_loss(self, T: torch.Tensor) -> torch.Tensor:
        return sum(self.per_example(T, X, y)[0].sum(-1) for X, y in self.data_chunks()) / len(self.X)

    def __call__(self, Theta: torch.Tensor) -> torch.Tensor:
        single = Theta.ndim == 1
        out = torch.cat(self.map_chunks(Theta[None] if single else Theta, self._mean_loss))
        return out[0] if single else out


def objective(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss="ce", chunk: int = 256,
              data_chunk: int | None = None, train_mode: bool = False, strategy: str = "auto") -> ModelObjective:
    """A batched objective ``f(Θ) → [b]`` for ``model`` on ``(X, y)``; see :class:`ModelObjective`."""
    return ModelObjective(model, X, y, loss, chunk, data_chunk, train_mode, strategy)


def metrics(model: nn.Module, splits: Mapping[str, Data], chunk: int = 256) -> Callable[[torch.Tensor], dict]:
    """``g(Θ) → {"train_loss": [b], "train_acc": [b], "test_loss": …}`` for every named split, from one pass.

    All splits are concatenated and run through the model once per parameter vector; losses are the
    cross-entropy, accuracies fractions.
    """
    names = list(splits)
    X = torch.cat([splits[k].X for k in names])
    y = torch.cat([splits[k].y for k in names])
    bounds = torch.tensor([0] + [len(splits[k]) for k in names]).cumsum(0).tolist()
    f = objective(model, X, y, chunk=chunk)

    def split_means(T: torch.Tensor) -> dict:
        parts = []
        for X, y in f.data_chunks():
            loss, outputs = f.per_example(T, X, y)
            parts.append((loss, (class_logits(outputs).argmax(-1) == y).float()))
        losses, correct = (torch.cat(v, dim=1) for v in zip(*parts))
        return {f"{k}_{m}": v[:, a:b].mean(-1) for k, a, b in zip(names, bounds, bounds[1:])
                for m, v in (("loss", losses), ("acc", correct))}

    @torch.no_grad()
    def g(Theta: torch.Tensor) -> dict:
        parts = f.map_chunks(Theta[None] if Theta.ndim == 1 else Theta, split_means)
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    g.n = f.n
    g.theta = f.theta
    return g


# --------------------------------------------------------------------------------------------
# Directions
# --------------------------------------------------------------------------------------------


def _rows(t: torch.Tensor) -> torch.Tensor:
    """A tensor as filters: one row per slice along dimension 0 (a 1-D tensor is one filter)."""
    return t.reshape(t.shape[0], -1) if t.ndim >= 2 else t.reshape(1, -1)


def filter_normalized_direction(model: nn.Module, generator: torch.Generator | None = None,
                                one_dim: str = "zero") -> torch.Tensor:
    """A random direction ``[n]`` normalized filter by filter (Li et al. 2018).

    For each parameter tensor with at least two dimensions, a Gaussian tensor is drawn and each of
    its slices along dimension 0 (a convolution filter, or a dense layer's output unit) is rescaled
    to the norm of the matching slice of the weights: ``d_f ← d_f·‖w_f‖/‖d_f‖``. One-dimensional
    tensors (biases, BatchNorm scales and shifts) get zeros, or with ``one_dim="filter"`` a Gaussian
    rescaled to their own norm.
    """
    if one_dim not in ("zero", "filter"):
        raise ValueError(f"one_dim must be 'zero' or 'filter', got {one_dim!r}")
    parts = []
    for _, p in parameters(model):
        w = p.detach()
        if w.ndim < 2 and one_dim == "zero":
            parts.append(torch.zeros(w.numel(), dtype=w.dtype, device=w.device))
            continue
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype, device="cpu").to(w.device)
        rows_w, rows_d = _rows(w), _rows(d)
        scale = rows_w.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True).clamp_min(1e-30)
        parts.append((rows_d * scale).reshape(-1))
    return torch.cat(parts)


def random_directions(n: int, m: int, generator: torch.Generator | None = None,
                      dtype=torch.float32) -> torch.Tensor:
    """``m`` directions drawn uniformly from the unit sphere in ``n`` dimensions: ``[m, n]``."""
    d = torch.randn(m, n, generator=generator, dtype=dtype)
    return d / d.norm(dim=1, keepdim=True)


def orthogonalize(d2: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
    """``d2`` minus its projection on ``d1``, rescaled to keep the norm of ``d2``."""
    d = d2 - (d2 @ d1) / (d1 @ d1) * d1
    return d * (d2.norm() / d.norm())


def filter_normalized_plane(model: nn.Module, generator: torch.Generator | None = None,
                            one_dim: str = "zero") -> tuple[torch.Tensor, torch.Tensor]:
    """Two filter-normalized directions spanning a plane through ``model``'s weights (Li et al. 2018).

    ``d1`` is :func:`filter_normalized_direction`; ``d2`` is a second one drawn after it from the same
    ``generator`` and made orthogonal to ``d1`` (:func:`orthogonalize`, which keeps its norm).
    """
    d1 = filter_normalized_direction(model, generator, one_dim)
    d2 = orthogonalize(filter_normalized_direction(model, generator, one_dim), d1)
    return d1, d2


def moved(model: nn.Module, direction: torch.Tensor, t: float = 1.0) -> nn.Module:
    """A copy of ``model`` with weights ``θ + t·direction`` (``model`` itself is left as it is)."""
    theta = flatten(model).detach()
    if direction.shape != theta.shape:
        raise ValueError(f"the direction has shape {tuple(direction.shape)}, the model's weights {tuple(theta.shape)}")
    return unflatten(copy.deepcopy(model), theta + t * direction.to(theta))


def grid(lo: float, hi: float, num: int) -> torch.Tensor:
    """``num`` evenly spaced points from ``lo`` to ``hi`` with 0 among them exactly.

    The step is ``(hi − lo)/(num − 1)``; when 0 does not fall on it, the nearest point is moved to 0.
    """
    if not lo < 0 < hi or num < 3:
        raise ValueError(f"need lo < 0 < hi and num ≥ 3, got {lo}, {hi}, {num}")
    g = torch.linspace(lo, hi, num, dtype=torch.float64)
    g[g.abs().argmin()] = 0.0
    return g


def loss_at(f: Objective, theta: torch.Tensor):
    """``f(θ)``, checked before a measure starts its search: a NaN or infinite loss at the point itself is
    an error that says so (a broken model or data set, not a question of cutoffs or step sizes)."""
    if theta.ndim != 1:
        raise ValueError(f"θ must be a flat parameter vector [n], got shape {tuple(theta.shape)}")
    n = getattr(f, "n", None)
    if n is not None and n != theta.numel():
        raise ValueError(f"θ has {theta.numel()} entries but the objective's model has {n} parameters")
    with torch.no_grad():
        value = f(theta[None])
    for name, v in (value.items() if isinstance(value, dict) else [("loss", value)]):
        v = torch.as_tensor(v).reshape(-1)[0]
        if not torch.isfinite(v):
            what = "loss" if name == "loss" else name.replace("_", " ")
            raise ValueError(f"the {what} at θ is {v.item()}: check the model's weights and data")
    return {k: v[0] for k, v in value.items()} if isinstance(value, dict) else value[0]


def slice_1d(f: Objective, theta: torch.Tensor, direction: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``f(θ + a·d)`` for each step ``a``: ``[len(a)]`` (or a dict of them for :func:`metrics`)."""
    loss_at(f, theta)
    a = torch.as_tensor(a, dtype=theta.dtype, device=theta.device)
    with torch.no_grad():
        return f(theta[None] + a[:, None] * direction[None])


def slice_2d(f: Objective, theta: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, a: torch.Tensor,
             b: torch.Tensor):
    """``f(θ + a·d₁ + b·d₂)`` on the grid of steps ``a`` × ``b``: ``[len(b), len(a)]`` (rows follow ``b``).

    The orientation is that of ``matplotlib``'s ``contour(a, b, Z)``. With a :func:`metrics`
    objective, each entry of the returned dict has that shape. (The book keeps β for the poison factor.)
    """
    loss_at(f, theta)
    a = torch.as_tensor(a, dtype=theta.dtype, device=theta.device)
    b = torch.as_tensor(b, dtype=theta.dtype, device=theta.device)
    B, A = torch.meshgrid(b, a, indexing="ij")
    points = theta[None] + A.reshape(-1, 1) * d1[None] + B.reshape(-1, 1) * d2[None]
    with torch.no_grad():
        values = f(points)
    shape = (len(b), len(a))
    if isinstance(values, dict):
        return {k: v.reshape(shape) for k, v in values.items()}
    return values.reshape(shape)


def filter_normalized_slices(f: Objective, model: nn.Module, generator: torch.Generator | None, span: float,
                             points_1d: int, points_2d: int | None = None,
                             spans_2d: Sequence[float] | None = None) -> dict:
    """Li et al.'s slices of ``f`` around ``model``'s weights θ, on the plane of :func:`filter_normalized_plane`
    (``d1``, then ``d2``, drawn from ``generator``): what a figure of a basin's 1-D and 2-D slices needs.

    Returns a dict with ``d1`` and ``d2``; ``a1``, the ``points_1d`` steps of :func:`grid` from ``−span`` to
    ``span`` (0 among them, in θ's dtype); ``line``, ``f(θ + a·d1)`` on them (:func:`slice_1d`); and, when
    ``points_2d`` is given, ``planes``: for each half-width ``s`` of ``spans_2d`` (default: ``span`` alone), by
    ``s``, the pair ``(a2, values)`` of the ``points_2d`` steps from ``−s`` to ``s`` and ``f(θ + a·d1 + b·d2)``
    on the square grid ``a2 × a2`` (:func:`slice_2d`: ``[b, a]``). With a :func:`metrics` objective, ``line``
    and the values are dicts of such tensors.
    """
    d1, d2 = filter_normalized_plane(model, generator)
    theta = flatten(model)
    a1 = grid(-span, span, points_1d).to(theta.dtype)
    out = dict(d1=d1, d2=d2, a1=a1, line=slice_1d(f, theta, d1, a1))
    if points_2d is not None:
        out["planes"] = {}
        for s in (span,) if spans_2d is None else spans_2d:
            a2 = grid(-s, s, points_2d).to(theta.dtype)
            out["planes"][s] = (a2, slice_2d(f, theta, d1, d2, a2, a2))
    return out


def width_at(alphas: torch.Tensor, values: torch.Tensor, cutoff: float) -> tuple[float, float]:
    """The interval ``(a_lo, a_hi)`` around ``a = 0`` on a 1-D slice where ``values`` stay below ``cutoff``.

    ``alphas`` must contain 0 (see :func:`grid`); each end is the grid point just inside the first crossing,
    or the end of the grid when the slice never crosses. The width of the basin along the direction at
    that cutoff is ``a_hi − a_lo``.
    """
    alphas, values = torch.as_tensor(alphas), torch.as_tensor(values)
    zeros = (alphas == 0).nonzero()
    if len(zeros) == 0:
        raise ValueError("the slice's grid must contain 0 exactly (use landscape.grid)")
    zero = int(zeros[0])
    if not values[zero] < cutoff:
        raise ValueError(f"the value at the centre ({float(values[zero]):.4g}) is not below the cutoff {cutoff}")
    above = values >= cutoff
    right = [i for i in range(zero + 1, len(alphas)) if above[i]]
    left = [i for i in range(zero - 1, -1, -1) if above[i]]
    hi = alphas[right[0] - 1] if right else alphas[-1]
    lo = alphas[left[0] + 1] if left else alphas[0]
    return float(lo), float(hi)
