"""Widgets that work in two worlds.

A static page (the published book) keeps a widget's state but runs no Python: a
:func:`frame_player` shows precomputed frames whose slider and play button are linked in the
browser (``jslink``), so it still moves. A live kernel (Colab, Binder, Jupyter) runs callbacks:
:func:`live_figure` recomputes a figure from its controls. Both work with ipywidgets 7.7 (which
Colab has shipped) and 8.x.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from .viz import figure_to_png


def frame_player(frames: Sequence, labels: Sequence[str], description: str = "frame",
                 interval_ms: int = 900) -> widgets.VBox:
    """A slider (and play button) over precomputed frames, working without a kernel.

    ``frames`` are matplotlib figures or PNG bytes; ``labels`` are short captions shown above the
    frame (``"β = 0.3: test 52%"``). Everything lives in linked widget models, so the published page
    keeps its interactivity.
    """
    if len(frames) != len(labels) or not frames:
        raise ValueError(f"need one label per frame and at least one frame, got {len(frames)} frames, {len(labels)} labels")
    pngs = [f if isinstance(f, (bytes, bytearray)) else figure_to_png(f) for f in frames]
    captions = [f"<b>{label}</b>" for label in labels]
    slider = widgets.IntSlider(value=0, min=0, max=len(frames) - 1, description=description, readout=False,
                               continuous_update=True, layout=widgets.Layout(width="320px"))
    play = widgets.Play(value=0, min=0, max=len(frames) - 1, interval=interval_ms)
    widgets.jslink((play, "value"), (slider, "value"))
    image, caption = _frame_views(pngs, captions, slider)
    return widgets.VBox([widgets.HBox([play, slider, caption]), image])


def _frame_views(pngs: Sequence[bytes], captions: Sequence[str], slider: widgets.IntSlider):
    """The frame and its caption, following ``slider``."""
    if hasattr(widgets, "Stack"):
        # ipywidgets 8: every frame is in the page and the browser switches them, so a static page moves.
        image = widgets.Stack([widgets.Image(value=p, format="png") for p in pngs], selected_index=0)
        caption = widgets.Stack([widgets.HTML(c) for c in captions], selected_index=0)
        widgets.jslink((slider, "value"), (image, "selected_index"))
        widgets.jslink((slider, "value"), (caption, "selected_index"))
        return image, caption
    # ipywidgets 7 (what Colab has shipped) has no Stack; there is always a kernel there to swap the frame.
    image, caption = widgets.Image(value=pngs[0], format="png"), widgets.HTML(captions[0])

    def show(change):
        image.value, caption.value = pngs[change["new"]], captions[change["new"]]

    slider.observe(show, names="value")
    return image, caption


def live_figure(make_figure: Callable[..., "plt.Figure"], button: str = "Run", **controls) -> widgets.VBox:
    """Controls, a button and a figure recomputed by ``make_figure(**values)`` on click (needs a kernel)."""
    output = widgets.Output()
    run = widgets.Button(description=button, button_style="primary")

    def on_click(_):
        values = {name: control.value for name, control in controls.items()}
        with output:
            output.clear_output(wait=True)
            fig = make_figure(**values)
            if fig is not None:
                display(fig)
                plt.close(fig)

    run.on_click(on_click)
    return widgets.VBox([widgets.HBox(list(controls.values()) + [run]), output])
