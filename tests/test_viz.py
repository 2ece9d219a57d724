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
    plt.close(fig)
