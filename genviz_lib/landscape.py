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
import itertools
import math
import time
from typing import Callable, Mapping, Sequence

import torch
from torch import fx, nn
from torch.autograd import forward_ad
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


def squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example ``‖out − y‖²`` for outputs ``[.., N, C]`` and targets ``[N, C]`` (the objectives' ``loss="mse"``)."""
    return (out - y).pow(2).sum(-1)


def _per_example_losses(kind):
    if callable(kind):
        return kind
    if kind == "ce":
        return cross_entropy
    if kind == "mse":
        return squared_error
    raise ValueError(f"unknown loss {kind!r}: use 'ce', 'mse' or a function (outputs, labels) → per-example losses")


_RELUS = (torch.relu, torch.nn.functional.relu, torch.relu_)


def _conv_relu(x, weight, bias, stride, padding, dilation, groups):
    """A convolution and its ReLU as one oneDNN primitive (the ReLU a post-op on the output as it is written)."""
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation, groups, "relu", [], "")


class _DataConvReLU(nn.Module):
    """A convolution and its ReLU applied to the model's input, which stays the same from one parameter vector to
    the next: one oneDNN call as :func:`_conv_relu`, or with ``columns`` set, a batched matrix product of the
    weights (and bias) with the input's patches (im2col, with a row of ones for the bias), cut once per input and
    kept while the input is the same tensor unchanged. oneDNN runs a convolution with one input channel far
    below its rate for wider ones (the first layer of a small CNN on grey images: a tenth of the FLOPs, 40% of
    the time); with the patches cut once, that layer is one product per vector. Weights and bias are passed in,
    so ``functional_call`` reaches them through the convolution's own parameters; ``layer`` is that
    convolution, kept (not as a submodule) for timing.
    """

    max_bytes = 256 * 2 ** 20  # larger patches are not kept: the oneDNN call serves that input

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.__dict__["layer"] = layer
        self.stride, self.padding, self.dilation = list(layer.stride), list(layer.padding), list(layer.dilation)
        self.groups, self.kernel, self.bias = layer.groups, list(layer.kernel_size), layer.bias is not None
        self.columns, self.record, self.seen = False, False, None
        self._key = self._input = self._patches = None

    def _sizes(self, x: torch.Tensor) -> list[int]:
        return [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                zip(x.shape[2:], self.kernel, self.stride, self.padding, self.dilation)]

    def patches(self, x: torch.Tensor) -> torch.Tensor | None:
        """The input's patches ``[N, C·k… (+ 1), L]``, kept for the next call on the same input; ``None`` when
        they would take more than ``max_bytes``."""
        try:
            key = (x.data_ptr(), x.shape, x.stride(), x._version, x.dtype, x.device)
        except RuntimeError:  # an inference-mode tensor has no version counter: nothing tells if it changed
            return None
        if key != self._key:
            rows = x.shape[1] * math.prod(self.kernel) + self.bias
            if len(x) * rows * math.prod(self._sizes(x)) * x.element_size() > self.max_bytes:
                return None
            # holding the input keeps its memory from being reused by another tensor with the same key
            self._key, self._input, self._patches = key, x, None
            # one strided slice of the padded input per kernel offset (F.unfold is slower, and 2-D only)
            padded = nn.functional.pad(x, [q for p in reversed(self.padding) for q in (p, p)])
            sizes = self._sizes(x)
            parts = [padded[(slice(None), slice(None), *(slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n
                                                          in zip(offsets, self.dilation, self.stride, sizes)))]
                     for offsets in itertools.product(*(range(k) for k in self.kernel))]
            cols = torch.stack(parts, 2).reshape(len(x), -1, math.prod(sizes))  # rows ordered as the weights'
            if self.bias:
                cols = torch.cat([cols, cols.new_ones(len(x), 1, cols.shape[-1])], 1)
            self._patches = cols
        return self._patches

    def direct(self, x, weight, bias):
        return _conv_relu(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def by_columns(self, x, weight, bias):
        cols = self.patches(x) if self.groups == 1 else None
        if cols is None:
            return self.direct(x, weight, bias)
        w = weight.reshape(len(weight), -1)
        if bias is not None:
            w = torch.cat([w, bias[:, None]], 1)
        out = torch.bmm(w.expand(len(x), *w.shape), cols)
        return out.clamp_(min=0).view(len(x), len(weight), *self._sizes(x))

    def forward(self, x, weight, bias):
        if self.record:
            self.seen = x
        return (self.by_columns if self.columns else self.direct)(x, weight, bias)


def _choose_columns(model: nn.Module, X: torch.Tensor, rounds: int = 3) -> int:
    """Set ``columns`` on each :class:`_DataConvReLU` of ``model`` whose input is (a view of) ``X`` and that runs
    at least 10% faster so (timed on ``X``, the two ways taking turns); the number set."""
    layers = [m for m in model.modules() if isinstance(m, _DataConvReLU)]
    for m in layers:
        m.columns, m.record = False, True
    try:
        with torch.no_grad():
            model(X)
    finally:
        for m in layers:
            m.record = False
    chosen = 0
    for m in layers:
        x, m.seen = m.seen, None
        if x is None or x.untyped_storage().data_ptr() != X.untyped_storage().data_ptr():
            continue  # not fed by the data: its input changes with the weights
        w, b = m.layer.weight.detach(), None if m.layer.bias is None else m.layer.bias.detach()
        times = {"direct": math.inf, "columns": math.inf}
        with torch.no_grad():
            m.by_columns(x, w, b)  # cut the patches once, as every later call on this input finds them
            for _ in range(rounds):
                for name, fn in (("direct", m.direct), ("columns", m.by_columns)):
                    start = time.perf_counter()
                    fn(x, w, b)
                    times[name] = min(times[name], time.perf_counter() - start)
        m.columns = times["columns"] < 0.9 * times["direct"]
        m._key = m._input = m._patches = None  # the probe's patches: the data's are cut on first use
        chosen += m.columns
    return chosen


def _is_relu(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELUS and len(node.args) == 1
    return node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1


def _fuse_graph(traced: fx.GraphModule) -> int:
    """Replace each convolution whose only use is a ReLU by :func:`_conv_relu` (by a :class:`_DataConvReLU` when it
    takes the graph's input), in place; the number replaced."""
    graph, modules, fused = traced.graph, dict(traced.named_modules()), 0
    for node in list(graph.nodes):
        if not _is_relu(node, modules) or not isinstance(node.args[0], fx.Node):
            continue
        conv = node.args[0]
        layer = modules.get(conv.target) if conv.op == "call_module" else None
        if (type(layer) not in (nn.Conv1d, nn.Conv2d, nn.Conv3d) or len(conv.users) != 1 or conv.kwargs
                or len(conv.args) != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str)):
            continue
        with graph.inserting_before(node):
            weight = graph.get_attr(f"{conv.target}.weight")
            bias = graph.get_attr(f"{conv.target}.bias") if layer.bias is not None else None
            if conv.args[0].op == "placeholder":  # the model's input: the same for every parameter vector
                name = f"{conv.target.replace('.', '_')}_on_data"
                traced.add_submodule(name, _DataConvReLU(layer))
                new = graph.call_module(name, (conv.args[0], weight, bias))
            else:
                new = graph.call_function(_conv_relu, (conv.args[0], weight, bias, list(layer.stride),
                                                       list(layer.padding), list(layer.dilation), layer.groups))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        graph.erase_node(conv)
        fused += 1
    if fused:
        graph.lint()
        traced.recompile()
    return fused


def fused_conv_relu(model: nn.Module) -> nn.Module | None:
    """``model`` with each convolution whose only use is a ReLU replaced by one fused oneDNN call.

    The model is traced by ``torch.fx``; when its own ``forward`` cannot be (Python control flow on the
    inputs), its children are, and a shallow copy of it holds the fused ones. Either way the result shares
    ``model``'s submodules and parameters (nothing is copied) and keeps their names, so ``functional_call``
    takes the same dictionaries. ``None`` when nothing can be fused.
    """
    try:
        traced = fx.symbolic_trace(model)
    except Exception:  # tracing is best effort: fall back to the children
        traced = None
    if traced is not None:
        return traced if _fuse_graph(traced) else None
    children = {name: fused_conv_relu(child) for name, child in model.named_children()}
    children = {name: child for name, child in children.items() if child is not None}
    if not children:
        return None
    shell = copy.copy(model)
    shell._modules = {**model._modules, **children}
    return shell


def _differentiable(t: torch.Tensor) -> bool:
    """Whether ``t`` carries a derivative: a graph under autograd, a ``torch.func`` wrapper or a forward-mode tangent."""
    return ((torch.is_grad_enabled() and t.requires_grad) or torch._C._functorch.is_functorch_wrapped_tensor(t)
            or forward_ad.unpack_dual(t).tangent is not None)


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

    ``fuse`` (``"loop"`` on a CPU, float32, eval mode): a convolution followed by a ReLU is computed as one
    oneDNN convolution with the ReLU applied as its output is written, which saves a pass over every
    activation; a convolution on the data itself (the first layer), whose input is the same for every
    vector, becomes a matrix product with the data's patches, cut once, when that is at least 10% faster on
    the first data chunk (timed when the objective is made; it is for a convolution with one input channel,
    which oneDNN runs slowly). Both give the model's losses to float32 rounding, checked on the first
    examples before the fused path is used. ``"auto"`` (the default) fuses when the model can be traced by
    ``torch.fx``, has such a pair, and passes that check; ``True`` demands it (a ``ValueError`` says why
    not), ``False`` never fuses. The fused path serves evaluations without derivatives (slices, radii,
    metrics); anything that differentiates through the objective gets the plain path. ``f.fused`` tells
    which is in use.
    """

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss="ce", chunk: int = 256,
                 data_chunk: int | None = None, train_mode: bool = False, strategy: str = "auto",
                 fuse: bool | str = "auto"):
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} examples but y has {len(y)} labels")
        if strategy not in ("auto", "vmap", "loop"):
            raise ValueError(f"strategy must be 'auto', 'vmap' or 'loop', got {strategy!r}")
        if fuse not in ("auto", True, False):
            raise ValueError(f"fuse must be 'auto', True or False, got {fuse!r}")
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
        # copies: in train mode BatchNorm updates its running statistics, and the caller's model must not change
        self.buffers = {name: b.clone() for name, b in model.named_buffers()}
        self._fused_model, self.fused = None, False
        try:
            with torch.no_grad():
                self(self.theta[None])
        except RuntimeError as err:
            batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
            hint = " (BatchNorm in train mode cannot run under vmap: pass strategy='loop')" \
                if batchnorm and train_mode and strategy == "vmap" else ""
            raise ValueError(f"the model cannot take inputs of shape {tuple(X.shape[1:])}{hint}: {err}") from None
        if fuse:
            why = self._fuse()
            if why is not None and fuse is True:
                raise ValueError(f"cannot fuse the model's convolutions and ReLUs: {why}")

    def _fuse(self) -> str | None:
        """Switch to the fused model when it is possible and agrees with the plain one; else why not."""
        if self.strategy != "loop":
            return "only the 'loop' strategy evaluates fused convolutions"
        if self.train_mode:
            return "only in eval mode (train_mode=False)"
        if self.X.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            return "fused convolutions need a CPU with oneDNN (mkldnn)"
        if self.theta.dtype != torch.float32 or self.X.dtype != torch.float32:
            return "fused convolutions need float32 weights and inputs"
        was_training = self.model.training
        self.model.train(False)
        try:
            traced = fused_conv_relu(self.model)
            if traced is None:
                return "no convolution followed by a ReLU that torch.fx can trace"
            if not self._agrees(traced):
                return "the fused model's outputs differ from the model's"
            if _choose_columns(traced, self.X[: min(self.data_chunk, 512)]) and not self._agrees(traced):
                for m in traced.modules():
                    if isinstance(m, _DataConvReLU):
                        m.columns = False
        except Exception as err:  # an operator the fused path lacks (a dtype, a layout): run the model as it is
            return f"the fused model fails: {err}"
        finally:
            self.model.train(was_training)
        self._fused_model, self.fused = traced, True
        return None

    def _agrees(self, traced: nn.Module) -> bool:
        """Whether ``traced`` gives the model's outputs on the first examples, at the model's weights and away
        from them (it must follow θ), to float32 rounding."""
        with torch.no_grad():
            for theta in (self.theta, 0.5 * self.theta):
                split = (_split(self.model, theta), self.buffers)
                plain, fused = (functional_call(m, split, (self.X[:64],)) for m in (self.model, traced))
                if plain.shape != fused.shape or not torch.allclose(plain, fused, rtol=1e-5, atol=1e-6):
                    return False
        return True

    def _outputs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (_split(self.model, theta), self.buffers), (X,))

    def per_example(self, Theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example losses ``[b, N]`` and the outputs ``[b, N, C]`` (all of ``X`` in one pass)."""
        if self.strategy == "vmap":
            outputs = vmap(lambda t: self._outputs(t, X))(Theta)
        elif self.fused and not self.model.training and not _differentiable(Theta):
            model = self._fused_model
            outputs = torch.stack([functional_call(model, (_split(self.model, t), self.buffers), (X,)) for t in Theta])
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
              data_chunk: int | None = None, train_mode: bool = False, strategy: str = "auto",
              fuse: bool | str = "auto") -> ModelObjective:
    """A batched objective ``f(Θ) → [b]`` for ``model`` on ``(X, y)``; see :class:`ModelObjective`."""
    return ModelObjective(model, X, y, loss, chunk, data_chunk, train_mode, strategy, fuse)


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
