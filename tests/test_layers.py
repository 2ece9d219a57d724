"""The library's layers point one way: measures and figures never reach up to the trainer."""

import pytest

from genviz_lib import fingerprint

MEASURES = ["losses", "boundaries", "landscape", "volume", "curvature", "sharpness", "norms", "viz"]


def _imports(module: str) -> frozenset:
    return fingerprint._modules(fingerprint.PACKAGE)[module][1]


@pytest.mark.parametrize("module", MEASURES)
def test_measures_do_not_import_the_trainer(module):
    assert "train" not in _imports(module) and "experiments" not in _imports(module)


def test_the_import_reader_sees_every_form_of_import():
    assert {"losses", "data", "config", "models", "progress"} <= _imports("train")  # from .x import y
    assert {"train", "volume", "landscape"} <= _imports("experiments")  # from . import x, y
    assert fingerprint._imports(fingerprint.ast.parse(
        "import genviz_lib.volume\nfrom genviz_lib import data\nfrom genviz_lib.models import MLP")) == {
        "volume", "data", "models"}
