import pytest
import torch

from genviz_lib import boundaries, data


class _Disc(torch.nn.Module):
    """Class 1 inside the disc of radius 5 about the origin and inside a small disc of radius 1 at (10, 10)."""

    def forward(self, x):
        inside = (x.norm(dim=1) < 5) | ((x - torch.tensor([10.0, 10.0])).norm(dim=1) < 1)
        return torch.where(inside, 1.0, -1.0)[:, None] + 0 * self.dummy

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))


def test_boundary_stats_counts_regions_islands_and_margins():
    pts = data.Data(torch.tensor([[0.0, 0.0], [3.0, 0.0], [10.0, 10.0], [-15.0, -15.0]]), torch.tensor([1, 1, 1, 0]))
    s = boundaries.boundary_stats(_Disc(), pts, extent=18, resolution=721)  # grid step 0.05
    assert s["regions"] == 3 and s["islands"] == 2  # the outside, and the two discs it encloses
    assert s["margin"] == pytest.approx([5.0, 2.0, 1.0, 15 * 2 ** 0.5 - 5], abs=0.08)


def test_predict_grid_covers_the_window_with_the_origin_in_the_middle():
    axis, pred = boundaries.predict_grid(_Disc(), extent=18, resolution=721)
    assert axis[0] == -18 and axis[-1] == 18 and abs(axis[360]) < 1e-6 and pred.shape == (721, 721)
    assert pred[360, 360] == 1 and pred[0, 0] == 0
    assert pred[360 + 200, 360 + 200] == 1  # (10, 10): the small disc; rows are y, columns are x
