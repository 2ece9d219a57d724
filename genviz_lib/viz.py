"""Figures of the book, so that chapters hold prose and short cells."""

from __future__ import annotations

import io
import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from .data import Data
from .boundaries import predict_grid
from .losses import class_logits

CLASS_COLORS = ("#c0392b", "#2e6db4")  # class 0 red, class 1 blue, as in Huang et al.
REGION_COLORS = ("#f4c7c1", "#c5d8f0")


def decision_boundary(model: torch.nn.Module, data: Data, ax=None, extent: float = 18.0, resolution: int = 500,
                      title: str | None = None, mark_misclassified: bool = True):
    """Class regions of a 2-D classifier with the data on top; misclassified points are ringed in black.

    The default grid is the one of Huang et al. Fig. 3: 500 × 500 points over ``[−18, 18]²``.
    """
    if data.X.ndim != 2 or data.X.shape[1] != 2:
        raise ValueError(f"decision_boundary draws 2-D inputs, got inputs of shape {tuple(data.X.shape[1:])}")
    ax = ax or plt.gca()
    axis, pred = predict_grid(model, extent, resolution)
    ax.pcolormesh(axis, axis, pred, cmap=ListedColormap(REGION_COLORS), vmin=0, vmax=1,
                  shading="auto", rasterized=True)
    ax.contour(axis, axis, pred, levels=[0.5], colors="k", linewidths=0.6)
    X, y = data.X.numpy(), data.y.numpy()
    for c, color in enumerate(CLASS_COLORS):
        ax.scatter(*X[y == c].T, s=9, c=color, edgecolors="white", linewidths=0.3)
    if mark_misclassified:
        device = next(model.parameters()).device
        with torch.no_grad():
            wrong = (class_logits(model(data.X.to(device))).argmax(-1).cpu() != data.y).numpy()
        if wrong.any():
            ax.scatter(*X[wrong].T, s=40, facecolors="none", edgecolors="k", linewidths=1.0)
    ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal", xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def boundary_grid(models: Sequence[torch.nn.Module], data: Data, titles: Sequence[str], ncols: int | None = None,
                  size: float = 3.2, **kwargs):
    """Decision boundaries of several models side by side; returns the figure."""
    n = len(models)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax, model, title in zip(axes.flat, models, titles):
        decision_boundary(model, data, ax=ax, title=title, **kwargs)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_history(results: dict, ax=None, metric: str = "acc"):
    """Train (solid) and test (dashed) ``metric`` ("acc" or "loss") of named :class:`TrainResult` s."""
    ax = ax or plt.gca()
    for i, (name, result) in enumerate(results.items()):
        color = f"C{i}"
        h = result.history
        ax.plot(h["step"], h[f"train_{metric}"], color=color, label=f"{name}: train")
        if not np.isnan(h[f"test_{metric}"]).all():
            ax.plot(h["step"], h[f"test_{metric}"], color=color, ls="--", label=f"{name}: test")
    ax.set(xlabel="optimizer step", ylabel="accuracy" if metric == "acc" else "cross-entropy")
    if metric == "loss":
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return ax


def figure_to_png(fig, dpi: int = 80, close: bool = True) -> bytes:
    """PNG bytes of a figure (for widget frames); closes the figure by default."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return buffer.getvalue()


def accuracy_bars(names: Sequence[str], train_acc: Sequence[float], test_acc: Sequence[float], ax=None,
                  chance: float | None = None):
    """Grouped bars of train and test accuracy per model, values written on the bars."""
    ax = ax or plt.gca()
    pos = np.arange(len(names))
    for offset, values, label, color in ((-0.2, train_acc, "train", "C0"), (0.2, test_acc, "test", "C1")):
        bars = ax.bar(pos + offset, np.asarray(values, dtype=float), width=0.4, label=label, color=color)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8)
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1)
    ax.set_xticks(pos, [str(n).replace(", ", ",\n").replace(" on ", "\non ") for n in names], fontsize=8)
    ax.set(ylabel="accuracy", ylim=(0, 1.12))
    ax.legend(fontsize=8, loc="upper right")
    return ax


def embed_2d(points, pca_dim: int = 50, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE coordinates of ``points`` (rows: flat weight vectors), after PCA to ``pca_dim``.

    This is Huang et al.'s recipe for Fig. 1: principal components first (to remove noise and speed
    up t-SNE), then t-SNE (van der Maaten & Hinton 2008). The perplexity is capped below the number
    of points, as t-SNE requires.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    X = np.asarray(points, dtype=np.float64)
    if X.ndim != 2 or len(X) < 3:
        raise ValueError(f"need at least 3 points as rows of a 2-D array, got shape {X.shape}")
    k = min(pca_dim, len(X), X.shape[1])
    Z = PCA(n_components=k, random_state=seed).fit_transform(X)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(X) - 1) / 3), init="pca", random_state=seed)
    return tsne.fit_transform(Z)


def minefield(trajectory_xy, bad_xy, starts, test_acc=None, ax=None):
    """Huang et al. Fig. 1: the optimizer's iterates (red, darker later), a bad minimum from each chosen
    iterate (blue, linked to where it started) and the final iterate (star)."""
    ax = ax or plt.gca()
    trajectory_xy, bad_xy = np.asarray(trajectory_xy), np.asarray(bad_xy)
    t = len(trajectory_xy)
    ax.plot(*trajectory_xy.T, color=CLASS_COLORS[0], lw=0.6, alpha=0.5, zorder=1)
    ax.scatter(*trajectory_xy.T, s=10, color=CLASS_COLORS[0], alpha=np.linspace(0.15, 1.0, t),
               label="iterates of training", zorder=2)
    for k, (s, b) in enumerate(zip(starts, bad_xy)):
        ax.plot(*np.stack([trajectory_xy[s], b]).T, color="grey", lw=0.5, ls=":", zorder=1)
    # the colour scale spans the bad minima's own accuracies (they all sit near chance), not 0-100%
    lo, hi = (float(np.min(test_acc)), float(np.max(test_acc))) if test_acc is not None else (0.0, 1.0)
    lo, hi = (lo - 0.005, hi + 0.005) if hi - lo < 0.01 else (lo, hi)
    scatter = ax.scatter(*bad_xy.T, s=28, c=CLASS_COLORS[1] if test_acc is None else test_acc,
                         cmap="Blues_r", vmin=lo, vmax=hi, edgecolors="k", linewidths=0.4,
                         label="bad minima", zorder=3)
    ax.scatter(*trajectory_xy[-1], marker="*", s=220, color="#f1c40f", edgecolors="k", label="final iterate",
               zorder=4)
    if test_acc is not None:
        bar = plt.colorbar(scatter, ax=ax, label="test accuracy of the bad minimum", shrink=0.8)
        percent_axis(bar.ax)
    ax.set(xticks=[], yticks=[], xlabel="t-SNE 1", ylabel="t-SNE 2")
    ax.legend(fontsize=8, loc="best")
    return ax


def percent_axis(ax, axis: str = "y"):
    """Label an axis that shows fractions as percentages (0.25 → 25%); returns ``ax``."""
    getattr(ax, f"{axis}axis").set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    return ax


def metric_lines(x: Sequence[float], series: dict, ax=None, xlabel: str = "", ylabel: str = "accuracy",
                 reference: dict | None = None, percent: bool = True):
    """One line with markers per named series over a shared ``x``; ``reference`` draws labelled horizontal lines."""
    ax = ax or plt.gca()
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(x, ys, marker="o", color=f"C{i}", label=name)
    for name, value in (reference or {}).items():
        ax.axhline(value, color="grey", ls=":", lw=1)
        ax.annotate(name, (ax.get_xlim()[0], value), xytext=(4, 3), textcoords="offset points", fontsize=8,
                    color="grey")
    if percent:
        percent_axis(ax)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    return ax


def slice_curves(alphas, series: dict, ax=None, cutoff: float | None = None, log: bool = True):
    """1-D loss slices: one curve per named series over the step ``alphas``; ``cutoff`` as a dotted line."""
    ax = ax or plt.gca()
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(np.asarray(alphas), np.asarray(ys), color=f"C{i}", label=name)
    if cutoff is not None:
        ax.axhline(cutoff, color="grey", ls=":", lw=1, label=f"cutoff {cutoff:g}")
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="step along a filter-normalized direction", ylabel="training loss")
    ax.legend(fontsize=8)
    return ax


def _log_loss(Z, floor: float | None) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    return np.log10(np.maximum(Z, floor) if floor is not None else Z)


def slice_contours(alphas, betas, Z, ax=None, levels=20, floor: float | None = None, cutoff: float | None = None,
                   title: str = ""):
    """A 2-D slice as filled contours of log₁₀ loss (values below ``floor`` shown at the floor), the
    ``cutoff`` as a white line and the minimizer as a red cross; returns the contour set (for a colour bar)."""
    ax = ax or plt.gca()
    L = _log_loss(Z, floor)
    cs = ax.contourf(np.asarray(alphas), np.asarray(betas), L, levels=levels, cmap="viridis", extend="both")
    if cutoff is not None and L.min() < np.log10(cutoff) < L.max():
        ax.contour(np.asarray(alphas), np.asarray(betas), L, levels=[np.log10(cutoff)], colors="w", linewidths=1.2)
    ax.plot(0, 0, "r+", ms=10)
    ax.set(title=title, xlabel="direction 1", ylabel="direction 2", aspect="equal")
    ax.locator_params(nbins=5)
    return cs


def surface(alphas, betas, Z, ax=None, log: bool = True, title: str = "", floor: float | None = None):
    """A 2-D slice as a 3-D surface (``ax`` must be a 3-D axes, or one is made); ``Z`` is ``[len(betas), len(alphas)]``.

    With ``log``, the height is log₁₀ of the loss, floored at ``floor`` when given."""
    if ax is None:
        ax = plt.figure().add_subplot(projection="3d")
    A, B = np.meshgrid(np.asarray(alphas), np.asarray(betas))
    Z = _log_loss(Z, floor) if log else np.asarray(Z)
    ax.plot_surface(A, B, Z, cmap="viridis", linewidth=0, antialiased=True, rcount=60, ccount=60)
    ax.set(xlabel="direction 1", ylabel="direction 2", zlabel="log₁₀ loss" if log else "loss", title=title)
    return ax
