"""Decision boundaries of 2-D classifiers, measured: the predicted class on a grid, and the counts behind
Huang et al.'s "islands and peninsulas" (their Fig. 3 and Fig. 6).

:func:`predict_grid` evaluates a model on the grid the figures draw (by default theirs: 500 × 500 points over
``[−18, 18]²``); :func:`boundary_stats` counts the connected regions of each class, the islands among them,
and each training point's distance to the other class in input space.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import Data
from .losses import class_logits


@torch.no_grad()
def predict_grid(model: torch.nn.Module, extent: float = 18.0, resolution: int = 500):
    """Predicted class on a ``resolution × resolution`` grid over ``[−extent, extent]²``."""
    device = next(model.parameters()).device
    axis = torch.linspace(-extent, extent, resolution)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    was_training = model.training
    model.eval()
    pred = []
    for chunk in points.split(65536):
        logits = class_logits(model(chunk.to(device)))
        if not torch.isfinite(logits).all():
            model.train(was_training)
            raise ValueError(f"the network's outputs include {logits[~torch.isfinite(logits)][0].item()}: "
                             "check the model's weights and data")
        pred.append(logits.argmax(-1).cpu())
    pred = torch.cat(pred)
    model.train(was_training)
    return axis.numpy(), pred.reshape(resolution, resolution).numpy()


def boundary_stats(model: torch.nn.Module, data: Data, extent: float = 18.0, resolution: int = 500) -> dict:
    """Counts behind the "islands and peninsulas" of a 2-D classifier, from its predictions on the grid.

    ``regions``: connected regions of either class; ``islands``: those that do not touch the edge of the
    window (enclosed by the other class); ``margin``: for each point of ``data``, the distance to the nearest
    grid cell predicted as another class (an input-space margin, to the grid's resolution).
    """
    from scipy import ndimage

    axis, pred = predict_grid(model, extent, resolution)
    regions = islands = 0
    for c in (0, 1):
        labels, n = ndimage.label(pred == c)
        edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
        regions, islands = regions + n, islands + n - len(edge)
    step = axis[1] - axis[0]
    X, y = data.X.numpy(), data.y.numpy()
    ix = np.clip(np.rint((X - axis[0]) / step).astype(int), 0, resolution - 1)  # grid cell of each point
    margin = np.empty(len(y))
    for c in (0, 1):
        # distance from every cell of class c to the nearest cell of the other class
        dist = ndimage.distance_transform_edt(pred == c) * step
        margin[y == c] = dist[ix[y == c, 1], ix[y == c, 0]]
    return dict(regions=int(regions), islands=int(islands), margin=margin)
