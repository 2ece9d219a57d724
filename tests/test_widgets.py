import ipywidgets
import pytest

from genviz_lib import widgets

PNGS = [b"\x89PNG frame %d" % i for i in range(3)]


def _parts(player):
    controls, frame = player.children
    play, slider, caption = controls.children
    return play, slider, caption, frame


def test_frame_player_links_frames_in_the_browser_on_ipywidgets_8(monkeypatch):
    if not hasattr(ipywidgets, "Stack"):
        pytest.skip("ipywidgets 7 has no Stack")
    links, jslink = [], ipywidgets.jslink
    monkeypatch.setattr(ipywidgets, "jslink", lambda a, b: links.append((a[0], a[1], b[0], b[1])) or jslink(a, b))
    play, slider, caption, frame = _parts(widgets.frame_player(PNGS, ["a", "b", "c"]))
    assert isinstance(frame, ipywidgets.Stack) and [c.value for c in frame.children] == PNGS
    assert [(type(a).__name__, ta, type(b).__name__, tb) for a, ta, b, tb in links] == [
        ("Play", "value", "IntSlider", "value"), ("IntSlider", "value", "Stack", "selected_index"),
        ("IntSlider", "value", "Stack", "selected_index")]
    assert links[1][2] is frame and links[2][2] is caption and links[0][0] is play and links[1][0] is slider
    slider.value = 2  # no kernel callback moves anything: the browser does (a static page has no kernel)
    assert frame.selected_index == 0


def test_frame_player_swaps_frames_in_the_kernel_without_stack(monkeypatch):
    monkeypatch.delattr(ipywidgets, "Stack", raising=False)  # as on ipywidgets 7.7, which Colab has shipped
    play, slider, caption, frame = _parts(widgets.frame_player(PNGS, ["a", "b", "c"]))
    assert isinstance(frame, ipywidgets.Image) and frame.value == PNGS[0] and caption.value == "<b>a</b>"
    slider.value = 2
    assert frame.value == PNGS[2] and caption.value == "<b>c</b>"


def test_frame_player_needs_one_label_per_frame():
    with pytest.raises(ValueError, match="one label per frame"):
        widgets.frame_player(PNGS, ["a"])
