"""Exact Hessian-vector products of sequential nets, written out layer by layer (Pearlmutter 1994).

For a model that is a chain of ``nn.Linear`` layers and elementwise activations (ReLU, tanh), ending in the
book's cross-entropy or squared error, ``H v`` is the derivative of the gradient along ``v``. It takes two
passes over the layers: a forward pass carrying the tangent of every activation, then a backward pass carrying
the tangent of every gradient. The activations, the gradients and the activations' derivatives at ``θ`` are
computed once, when the operator is built; a product is then a few matrix products per layer, and a block of
``k`` vectors is the same matrix products with a leading dimension ``k``. Autograd's double backward does the
same arithmetic (the Hessian is the same to rounding) but walks a graph of many small nodes per product, and
on the book's small nets that walk is most of the time.

:meth:`SequentialCurvature.build` returns ``None`` for anything else (a convolution, a custom module, a loss
given as a function, frozen parameters); :class:`~genviz_lib.curvature.HessianOperator` then uses autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from .landscape import ModelObjective, squared_error
from .landscape import parameters as landscape_parameters
from .losses import cross_entropy

_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _chain(model: nn.Module):
    """``(flatten_input, ops)`` for a supported chain, each op ``("linear", module)`` or ``(activation, None)``;
    ``None`` when the model is anything else."""
    from .models import MLP  # a plain Sequential, or the book's MLP (which flattens its input first)

    if type(model) not in (nn.Sequential, MLP):
        return None
    flatten, ops = type(model) is MLP, []
    for m in model:
        if type(m) is nn.Linear:
            ops.append(("linear", m))
        elif type(m) in _ACTIVATIONS:
            ops.append((_ACTIVATIONS[type(m)], None))
        elif type(m) is nn.Flatten and not ops and m.start_dim == 1 and m.end_dim == -1:
            flatten = True
        elif type(m) is nn.Identity:
            continue
        else:
            return None
    return (flatten, ops) if ops and ops[0][0] == "linear" else None


class SequentialCurvature:
    """The gradient and the Hessian-vector products of a model objective whose model is a supported chain."""

    def __init__(self, f: ModelObjective, theta: torch.Tensor, chain):
        flatten, ops = chain
        params = landscape_parameters(f.model)
        index = {id(p): i for i, (_, p) in enumerate(params)}
        self.shapes = [p.shape for _, p in params]
        self.sizes = [p.numel() for _, p in params]
        self.n = sum(self.sizes)
        values = [t.view(s) for t, s in zip(theta.detach().split(self.sizes), self.shapes)]
        self.layers = []  # ("linear", W index, b index or None) or (activation,)
        for kind, m in ops:
            if kind == "linear":
                self.layers.append((kind, index[id(m.weight)], None if m.bias is None else index[id(m.bias)]))
            else:
                self.layers.append((kind,))
        self.values = values
        self.kind = "ce" if f.loss is cross_entropy else "mse"
        total = len(f.X)
        self.chunks = []
        grads = [torch.zeros_like(v) for v in values]
        with torch.no_grad():
            for X, y in f.data_chunks():
                self.chunks.append(self._point(X.flatten(1) if flatten else X, y, total, grads))
        self.gradient = torch.cat([g.reshape(-1) for g in grads])
        self.saved_bytes = sum(t.numel() * t.element_size() for c in self.chunks for t in _tensors(c))

    @classmethod
    def build(cls, f, theta: torch.Tensor) -> "SequentialCurvature | None":
        """The written-out products for ``f`` at ``theta``, or ``None`` when ``f`` is not a supported chain."""
        if not isinstance(f, ModelObjective) or f.loss not in (cross_entropy, squared_error):
            return None
        chain = _chain(f.model)
        if chain is None:
            return None
        params = landscape_parameters(f.model)
        ids = {id(p) for _, p in params}
        linears = [m for kind, m in chain[1] if kind == "linear"]
        owned = {id(m.weight) for m in linears} | {id(m.bias) for m in linears if m.bias is not None}
        if ids != owned or len(owned) != sum(1 + (m.bias is not None) for m in linears):
            return None  # frozen or shared parameters: autograd handles those
        X = f.X.flatten(1) if chain[0] else f.X
        if X.ndim != 2 or not (theta.dtype == X.dtype and theta.is_floating_point()):
            return None
        width = linears[-1].out_features
        if f.loss is cross_entropy and (f.y.ndim != 1 or f.y.dtype.is_floating_point):
            return None
        if f.loss is squared_error and tuple(f.y.shape) != (len(X), width):
            return None
        return cls(f, theta, chain)

    def _point(self, a, y, total, grads):
        """The forward and backward pass at θ on one data chunk; adds the chunk's gradient into ``grads``."""
        inputs, derivs = [], []  # per layer: its input; per activation: σ'(z)
        for layer in self.layers:
            inputs.append(a)
            if layer[0] == "linear":
                W, b = self.values[layer[1]], None if layer[2] is None else self.values[layer[2]]
                a = a @ W.t() if b is None else torch.addmm(b, a, W.t())
            elif layer[0] == "relu":
                derivs.append((a > 0).to(a.dtype))
                a = a.clamp_min(0)
            else:
                a = torch.tanh(a)
                derivs.append(1 - a * a)
        out = a
        # the loss's gradient at the outputs, and its Hessian there as (p, c): H R = c·R, or for softmax
        # cross-entropy H R = (p ⊙ R − p (p·R)) / N
        if self.kind == "ce" and out.shape[-1] == 1:  # one logit z for the classes [0, z]: the logistic loss
            p = torch.sigmoid(out)
            g, head = (p - y[:, None].to(out.dtype)) / total, (None, p * (1 - p) / total)
        elif self.kind == "ce":
            p = torch.softmax(out, -1)
            g, head = p.clone(), (p, 1 / total)
            g[torch.arange(len(y)), y] -= 1
            g /= total
        else:
            g, head = 2 * (out - y) / total, (None, 2 / total)
        outgrads, seconds = [None] * len(self.layers), [None] * len(self.layers)
        d = len(derivs)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            outgrads[i] = g
            if layer[0] == "linear":
                grads[layer[1]] += g.t() @ inputs[i]
                if layer[2] is not None:
                    grads[layer[2]] += g.sum(0)
                if i:
                    g = g @ self.values[layer[1]]
            else:
                d -= 1
                if layer[0] == "tanh":  # g·σ''(z), with σ'' = −2 tanh(z)(1 − tanh²(z))
                    seconds[i] = -2 * g * torch.tanh(inputs[i]) * derivs[d]
                g = g * derivs[d]
        return inputs, derivs, outgrads, seconds, head

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H vᵢ`` for the rows of ``V: [k, n]``, all ``k`` together."""
        return torch.cat([o.reshape(len(V), -1) for o in self._products(V, (len(V),))], dim=1)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for one ``v: [n]`` (matrix-vector products throughout, no batch dimension)."""
        return torch.cat([o.reshape(-1) for o in self._products(v, ())])

    def _products(self, V: torch.Tensor, lead: tuple) -> list:
        """The products' pieces, one per parameter, each ``[*lead, *shape]``; ``lead`` is ``(k,)`` or ``()``."""
        pieces = [p.view(*lead, *s) for p, s in zip(V.split(self.sizes, dim=-1), self.shapes)]
        out = [None] * len(self.sizes)
        for inputs, derivs, outgrads, seconds, (p, c) in self.chunks:
            tangents, R, d = [], None, 0  # the tangent of each layer's input; None is zero (the data)
            for i, layer in enumerate(self.layers):
                tangents.append(R)
                if layer[0] == "linear":
                    if layer[2] is None:
                        Rz = torch.matmul(inputs[i], pieces[layer[1]].mT)
                    else:
                        Rz = _product_add(pieces[layer[2]].unsqueeze(-2), inputs[i], pieces[layer[1]].mT)
                    R = Rz if R is None else _product_add(Rz, R, self.values[layer[1]].t())
                else:
                    R = R * derivs[d]
                    d += 1
            Rg = R * c if p is None else (p * R - p * (p * R).sum(-1, keepdim=True)) * c
            for i in range(len(self.layers) - 1, -1, -1):
                layer = self.layers[i]
                if layer[0] == "linear":
                    HW = torch.matmul(Rg.mT, inputs[i])
                    if tangents[i] is not None:
                        HW = _product_add(HW, outgrads[i].t(), tangents[i])
                    _add(out, layer[1], HW)
                    if layer[2] is not None:
                        _add(out, layer[2], Rg.sum(-2))
                    if i:
                        Rg = _product_add(torch.matmul(outgrads[i], pieces[layer[1]]), Rg, self.values[layer[1]])
                else:
                    d -= 1
                    Rg = Rg * derivs[d]
                    if seconds[i] is not None:
                        Rg += seconds[i] * tangents[i]
        return out

    def __repr__(self):
        return f"SequentialCurvature({len(self.layers)} layers, {self.n} parameters, {self.kind})"


def _product_add(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``acc + a @ b``: one ``addmm`` for matrices; for a batch the product has the full shape and ``acc``
    broadcasts into it."""
    if acc.ndim == a.ndim == b.ndim == 2:
        return torch.addmm(acc, a, b)
    return torch.matmul(a, b).add_(acc)


def _add(out: list, i: int, value: torch.Tensor):
    out[i] = value if out[i] is None else out[i] + value


def _tensors(chunk):
    inputs, derivs, outgrads, seconds, head = chunk
    return [t for t in (*inputs, *derivs, *outgrads, *seconds, *head) if isinstance(t, torch.Tensor)]
