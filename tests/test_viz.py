import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from genviz_lib import viz


def test_embed_2d_keeps_clusters_apart():
    # Three tight clusters far apart in 200 dimensions: every point's nearest neighbour in the plane
    # must come from its own cluster.
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 200)) * 10
    X = np.concatenate([c + rng.normal(size=(20, 200)) * 0.1 for c in centres])
    labels = np.repeat([0, 1, 2], 20)
    xy = viz.embed_2d(X, pca_dim=50, perplexity=10, seed=0)
    assert xy.shape == (60, 2)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(60) * 1e9
    assert (labels[d.argmin(1)] == labels).all()
    with pytest.raises(ValueError, match="at least 3 points"):
        viz.embed_2d(np.zeros((2, 5)))


def test_minefield_draws_every_point_and_link():
    traj, bad = np.arange(20.0).reshape(10, 2), np.ones((3, 2))
    fig, ax = plt.subplots()
    viz.minefield(traj, bad, starts=[0, 4, 9], test_acc=[0.4, 0.5, 0.45], ax=ax)
    sizes = sorted(len(c.get_offsets()) for c in ax.collections)
    assert sizes == [1, 3, 10]  # final iterate, bad minima, trajectory
    assert len(ax.lines) == 1 + 3  # the path and one dotted link per bad minimum
    plt.close(fig)


def test_metric_lines_plots_each_series_and_reference():
    fig, ax = plt.subplots()
    viz.metric_lines([1, 2, 3], {"a": [0.9, 0.5, 0.2], "b": [0.8, 0.7, 0.6]}, ax=ax, reference={"chance": 0.1})
    ys = [list(line.get_ydata()) for line in ax.lines]
    assert [0.9, 0.5, 0.2] in ys and [0.8, 0.7, 0.6] in ys and [0.1, 0.1] in ys
    assert ax.yaxis.get_major_formatter()(0.25, 0) == "25%"  # fractions shown as percentages
    plt.close(fig)


def test_percent_axis_formats_the_chosen_axis():
    fig, ax = plt.subplots()
    assert viz.percent_axis(ax, "x") is ax
    assert ax.xaxis.get_major_formatter()(0.125, 0) == "12%" and ax.xaxis.get_major_formatter()(1.0, 0) == "100%"
    assert ax.yaxis.get_major_formatter()(0.25, 0) != "25%"  # the other axis is left alone
    plt.close(fig)


def test_slice_curves_and_surface_draw_what_they_are_given():
    fig, ax = plt.subplots()
    viz.slice_curves([-1, 0, 1], {"a": [3.0, 1.0, 2.0]}, ax=ax, cutoff=0.5)
    assert [list(line.get_ydata()) for line in ax.lines] == [[3.0, 1.0, 2.0], [0.5, 0.5]]
    assert ax.get_yscale() == "log"
    plt.close(fig)
    fig = plt.figure()
    ax = viz.surface([0, 1, 2], [0, 1], np.full((2, 3), 100.0), ax=fig.add_subplot(projection="3d"))
    assert ax.get_zlim()[0] <= 2.0 <= ax.get_zlim()[1]  # log10(100) = 2 everywhere
    assert ax.get_zlabel() == "log₁₀ loss" and len(ax.collections) == 1
    plt.close(fig)


def test_slice_contours_floor_the_loss_and_draw_the_cutoff():
    a = np.linspace(-1, 1, 21)
    Z = 1e-9 + 10 * (a[None] ** 2 + a[:, None] ** 2)  # a bowl from 1e-9 up to 20
    fig, ax = plt.subplots()
    cs = viz.slice_contours(a, a, Z, ax=ax, levels=np.linspace(-3, 1.5, 10), floor=1e-3, cutoff=1.0)
    assert cs.levels.min() == -3
    assert len(ax.collections) >= 2  # the filled contours and the cutoff line
    assert [list(line.get_xdata()) for line in ax.lines] == [[0]]  # the minimizer's cross
    plt.close(fig)
