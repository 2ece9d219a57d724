"""Norms, margins and the normalized network (Neyshabur et al. 2017, §2.2; Poggio et al. 2020).

Norm-based measures only mean something relative to the scale of the outputs, so Neyshabur et al.
divide each by the squared *margin* ``γ``, a low percentile of ``f(x)[y] − max_{j≠y} f(x)[j]`` over the
training set (:func:`margin`). :func:`measures` returns the four of their Fig. 1, each with the terms that
depend only on depth and width dropped, as in their plots:

- ℓ2: ``Π_i ‖W_i‖_F² / γ²``
- spectral: ``Π_i ‖W_i‖_2² / γ²`` (a convolution's kernel taken as the matrix ``[out, in·k·k]``)
- ℓ1-path: ``(Σ_paths Π_i |W_i[j_i, j_{i−1}]|)² / γ²``
- ℓ2-path: ``Σ_paths Π_i W_i[j_i, j_{i−1}]² / γ²``

:func:`path_norm` sums over all input→output paths with one forward pass: weights replaced by
``|w|^p``, an all-ones input, and every output summed (exact for bias-free nets of linear and
convolutional layers and ReLUs, where a path's product is the product of its weights).

Poggio et al.'s normalized network (:func:`normalized_network`) divides each layer's weights by
their norm; a bias-free ReLU net is positively homogeneous in each layer, so ``f(W; x) = ρ · f(W̃; x)``
with ``ρ = Π_i ‖W_i‖``: the same predictions, and the cross-entropy of ``f̃`` is the *normalized loss*
(:func:`normalized_loss`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .data import Data
from .losses import class_logits, evaluate


def margins(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margins ``f(x)[y] − max_{j≠y} f(x)[j]`` ``[N]`` (a single logit ``z`` counts as ``[0, z]``)."""
    with torch.no_grad():
        logits = class_logits(model(X))
    if not torch.isfinite(logits).all():
        raise ValueError(f"the network's outputs include {logits[~torch.isfinite(logits)][0].item()}: "
                         "check the model's weights and data")
    y = y.to(logits.device)
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - others


def margin(model: nn.Module, X: torch.Tensor, y: torch.Tensor, percentile: float = 5.0) -> float:
    """Neyshabur et al.'s margin ``γ``: the ``⌈εm⌉``-th smallest margin over the ``m`` points, ``ε = percentile/100``
    (the lowest γ that at least ``⌈εm⌉`` points fall short of or reach; their "5th percentile")."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    values = margins(model, X, y).sort().values
    k = max(1, math.ceil(percentile / 100 * len(values)))
    return values[k - 1].item()


def weight_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The layers' weights (every parameter with at least two dimensions), in order."""
    return [(name, p.detach()) for name, p in model.named_parameters() if p.ndim >= 2]


def _require_bias_free(model: nn.Module, why: str) -> None:
    for name, p in model.named_parameters():
        if p.ndim < 2:
            raise ValueError(f"{why} needs a bias-free net without BatchNorm, but the model has the parameter {name!r} "
                             f"of shape {tuple(p.shape)} (build it with bias=False)")


def layer_norms(model: nn.Module, p: float = 2) -> torch.Tensor:
    """Entrywise ``‖W_i‖_p`` of each layer's weights (``p = 2``: Frobenius; ``p = inf``: largest entry), float64."""
    return torch.stack([torch.linalg.vector_norm(W.double(), ord=p) for _, W in weight_tensors(model)])


def frobenius_product(model: nn.Module) -> float:
    """``Π_i ‖W_i‖_F``."""
    return float(layer_norms(model, 2).prod())


def spectral_product(model: nn.Module) -> float:
    """``Π_i ‖W_i‖_2``, a convolution's kernel reshaped to ``[out, in·k·k]``."""
    return float(torch.stack([torch.linalg.matrix_norm(W.double().flatten(1), ord=2)
                              for _, W in weight_tensors(model)]).prod())


_PATH_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ReLU, nn.Flatten, nn.Identity, nn.AvgPool2d,
                 nn.Dropout)


def _input_shape(model: nn.Module, input_shape) -> tuple:
    if input_shape is not None:
        return tuple(input_shape)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, nn.modules.conv._ConvNd):
            break
    raise ValueError("give input_shape (the shape of one example) for a model that does not start with nn.Linear")


def path_norm(model: nn.Module, p: float = 2, input_shape: Sequence[int] | None = None) -> float:
    """``(Σ_paths Π_i |W_i[j_i, j_{i−1}]|^p)^{1/p}`` over all input→output paths, by one forward pass.

    With every weight replaced by ``|w|^p`` all pre-activations are non-negative, the ReLUs pass them
    unchanged, and on an all-ones input each output sums the products of the paths ending at it. For
    bias-free nets made of linear and convolutional layers, ReLUs, average pooling and flattening.
    """
    if p <= 0 or math.isinf(p):
        raise ValueError(f"p must be a positive finite number, got {p}")
    _require_bias_free(model, "path_norm")
    for m in model.modules():
        if len(list(m.children())) == 0 and not isinstance(m, _PATH_MODULES):
            raise ValueError(f"path_norm cannot sum paths through {type(m).__name__} (not linear in its input)")
    shape = _input_shape(model, input_shape)
    params = {name: W.double().abs().pow(p) for name, W in weight_tensors(model)}
    probe = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        total = functional_call(probe, params, (torch.ones(1, *shape, dtype=torch.float64),)).sum()
    return total.item() ** (1 / p)


def measures(model: nn.Module, X: torch.Tensor, y: torch.Tensor, percentile: float = 5.0,
             input_shape: Sequence[int] | None = None) -> dict[str, float]:
    """Neyshabur et al.'s Fig. 1 measures (``l2``, ``spectral``, ``l1_path``, ``l2_path``), each over ``γ²``,
    with ``margin`` itself. A non-positive margin (the net misclassifies more than ``percentile`` % of
    the points) makes them meaningless, and raises."""
    gamma = margin(model, X, y, percentile)
    if gamma <= 0:
        raise ValueError(f"the {percentile}th-percentile margin is {gamma:.3g} ≤ 0: the net does not fit the data")
    if input_shape is None:
        input_shape = tuple(X.shape[1:])
    return {"margin": gamma,
            "l2": frobenius_product(model) ** 2 / gamma ** 2,
            "spectral": spectral_product(model) ** 2 / gamma ** 2,
            "l1_path": path_norm(model, 1, input_shape) ** 2 / gamma ** 2,
            "l2_path": path_norm(model, 2, input_shape) ** 2 / gamma ** 2}


def normalized_network(model: nn.Module, p: float = 2) -> tuple[nn.Module, float]:
    """``(f̃, ρ)``: a copy with each layer's weights divided by their ``‖·‖_p`` and ``ρ = Π_i ‖W_i‖_p``.

    For a bias-free ReLU net ``f(W; x) = ρ · f(W̃; x)``: predictions are unchanged, and scaling one layer
    by ``a > 0`` and the next by ``1/a`` leaves ``f̃`` unchanged (Poggio et al.). ``ρ`` is a float64
    number; the copy keeps the model's dtype.
    """
    _require_bias_free(model, "normalized_network")
    norms = layer_norms(model, p)
    if bool((norms == 0).any()):
        raise ValueError("a layer's weights are all zero: the net cannot be normalized")
    normalized = copy.deepcopy(model)
    with torch.no_grad():
        for (name, W), norm in zip(weight_tensors(normalized), norms):
            normalized.get_parameter(name).copy_((W.double() / norm).to(W.dtype))
    return normalized, float(norms.prod())


def normalized_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor, p: float = 2,
                    dtype: torch.dtype = torch.float64, batch: int = 4096, scale: float = 1.0) -> float:
    """Poggio et al.'s normalized cross-entropy: the mean cross-entropy of ``scale · f̃``, ``f̃`` the normalized network.

    Computed in ``dtype`` (float64 by default: for ten classes the values all sit just above ``ln 10``
    and differ in the fourth or fifth decimal). ``scale`` is their ``R`` (eq. 6): one constant for every net
    compared, which moves the losses away from ``ln 10`` when the norm makes ``f̃`` tiny (L1: they divide
    its norms by 100) or huge (L∞), without changing any prediction.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    normalized, _ = normalized_network(copy.deepcopy(model).to(dtype), p)  # normalize in dtype, not before
    if scale != 1.0:
        with torch.no_grad():
            normalized.get_parameter(weight_tensors(normalized)[-1][0]).mul_(scale)  # R f̃: the last layer carries R
    loss, _ = evaluate(normalized, Data(X.to(dtype), y), batch_size=batch)
    return float(loss[0])


def homogeneity_check(model: nn.Module, X: torch.Tensor, p: float = 2) -> dict:
    """Check ``f(W; x) = ρ · f(W̃; x)`` on the inputs ``X``, in float64.

    Returns ``rho`` (``Π_i ‖W_i‖_p``), ``max_abs_error`` and ``max_rel_error`` (relative to the largest
    ``|f(W; x)|``) between the two sides, and ``same_predictions``: the fraction of inputs whose predicted
    class is the same for ``f`` and ``f̃``.
    """
    net = copy.deepcopy(model).double().eval()
    normalized, rho = normalized_network(net, p)
    with torch.no_grad():
        X = X.to(next(net.parameters()).device, torch.float64)
        f, f_tilde = class_logits(net(X)), class_logits(normalized(X))
    err = (f - rho * f_tilde).abs().max().item()
    return dict(rho=rho, max_abs_error=err, max_rel_error=err / f.abs().max().item(),
                same_predictions=(f.argmax(1) == f_tilde.argmax(1)).double().mean().item())


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """The least-squares line ``y ≈ slope · x + intercept`` in float64, with ``r2`` (``1 − SS_res / SS_tot``)
    and ``r2_diagonal``, the same score for the line ``y = x`` (how much of the fit the diagonal already gives)."""
    x, y = _vector(x), _vector(y)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError(f"need two sequences of the same length, at least 3, got {len(x)} and {len(y)}")
    if float(x.std()) == 0.0 or float(y.std()) == 0.0:
        raise ValueError("a sequence is constant: the line (or R²) is undefined")
    xc, yc = x - x.mean(), y - y.mean()
    slope = (xc * yc).sum() / (xc * xc).sum()
    intercept = y.mean() - slope * x.mean()
    total = (yc * yc).sum()
    r2 = 1 - ((y - slope * x - intercept) ** 2).sum() / total
    return dict(slope=float(slope), intercept=float(intercept), r2=float(r2),
                r2_diagonal=float(1 - ((y - x) ** 2).sum() / total))


def _vector(x) -> torch.Tensor:
    """Any sequence of numbers (list, array, tensor, pandas Series with any index) as a flat float64 tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().double().flatten().cpu()
    return torch.from_numpy(np.asarray(x, dtype=np.float64).copy()).flatten()


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's rank correlation τ-b between two sequences (ties counted as in τ-b), by
    :func:`scipy.stats.kendalltau` (O(n log n)). A NaN is an error, not a tie: say which value is missing."""
    import scipy.stats

    x, y = _vector(x).numpy(), _vector(y).numpy()
    if x.shape != y.shape or len(x) < 2:
        raise ValueError("need two sequences of the same length, at least 2")
    missing = np.isnan(x) | np.isnan(y)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} of {len(x)} pairs hold a NaN (the first at index "
                         f"{int(np.argmax(missing))}): drop or fill them before ranking")
    if np.all(x == x[0]) or np.all(y == y[0]):
        raise ValueError("a sequence is constant: τ is undefined")
    return float(scipy.stats.kendalltau(x, y).statistic)


@dataclasses.dataclass
class GranulatedTau:
    """Jiang et al.'s granulated Kendall coefficient (2020, eq. 4): ``psi[h]`` for each hyperparameter ``h``, the
    mean τ over the groups of nets that differ in ``h`` alone; ``Psi``, their mean. ``groups[h]`` counts the groups
    that entered ``psi[h]`` and ``undefined[h]`` those left out because the measure or the gap was constant in
    them (τ is undefined there); ``per_group[h]`` holds the τ of every group, NaN where undefined, in an order
    that depends on the grid alone (what :func:`genviz_lib.scores.score_intervals` resamples)."""

    psi: dict
    Psi: float
    groups: dict
    undefined: dict
    per_group: dict = dataclasses.field(default_factory=dict)


def granulated_tau(measure: Sequence[float], gap: Sequence[float], hyperparameters: dict,
                   fixed: dict | None = None) -> GranulatedTau:
    """Granulated τ of ``measure`` against ``gap`` over a grid of nets (Jiang et al. 2020, §4).

    ``hyperparameters`` maps each hyperparameter's name to its value for every net (one entry per net, as
    ``measure`` and ``gap``). For hyperparameter ``h``, the nets are grouped by the values of every *other*
    hyperparameter and of every column of ``fixed`` (for example the seed, which is held fixed but not scored);
    ``ψ_h`` is the mean over the groups of Kendall's τ between the measure and the gap within a group, and
    ``Ψ`` the mean of the ``ψ_h``. A group with fewer than two nets is an error (the grid is not factorial
    there); a group where the measure or the gap is constant has no τ and is counted in ``undefined``.
    """
    measure, gap = _vector(measure).numpy(), _vector(gap).numpy()
    columns = {**hyperparameters, **(fixed or {})}
    if len(measure) != len(gap) or any(len(v) != len(measure) for v in columns.values()):
        raise ValueError("measure, gap and every hyperparameter column need one entry per net")
    if not hyperparameters:
        raise ValueError("need at least one hyperparameter")
    if np.isnan(measure).any() or np.isnan(gap).any():
        raise ValueError("the measure or the gap holds a NaN: drop those nets (and say so) before scoring")
    psi, groups, undefined, per_group = {}, {}, {}, {}
    for h in hyperparameters:
        keys = [tuple(columns[c][i] for c in columns if c != h) for i in range(len(measure))]
        by_key: dict = {}
        for i, key in enumerate(keys):
            by_key.setdefault(key, []).append(i)
        taus = []
        for key, members in by_key.items():
            if len(members) < 2:
                raise ValueError(f"the nets with {dict(zip([c for c in columns if c != h], key))} do not vary "
                                 f"{h!r}: granulated τ needs a factorial grid")
            m, g = measure[members], gap[members]
            taus.append(math.nan if np.all(m == m[0]) or np.all(g == g[0]) else kendall_tau(m, g))
        defined = [t for t in taus if not math.isnan(t)]
        groups[h], undefined[h], per_group[h] = len(defined), len(taus) - len(defined), taus
        psi[h] = float(np.mean(defined)) if defined else math.nan
    return GranulatedTau(psi, float(np.mean(list(psi.values()))), groups, undefined, per_group)
