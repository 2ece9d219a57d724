"""The library's layers point one way: measures and figures never reach up to the trainer."""

import pytest

from genviz_lib import fingerprint

MEASURES = ["losses", "boundaries", "landscape", "volume", "curvature", "sharpness", "norms", "viz"]


TABLE = fingerprint._modules(fingerprint.PACKAGE)


def _imports(module: str) -> set:
    """The genviz_lib modules ``module`` imports (dotted names relative to the package)."""
    return {m for m in TABLE[module][1] if m in TABLE}


@pytest.mark.parametrize("module", MEASURES)
def test_measures_do_not_import_the_trainer(module):
    imported = _imports(module)
    assert "train" not in imported and not {m for m in imported if m.split(".")[0] == "experiments"}


def test_the_import_reader_sees_every_form_of_import():
    assert {"losses", "data", "config", "models", "progress"} <= _imports("train")  # from .x import y
    # from .. import x, y and from .settings import Settings, in a subpackage
    assert {"train", "volume", "landscape", "experiments.settings"} <= _imports("experiments.huang2020")
    assert {"experiments.huang2020", "experiments.poggio2020"} <= _imports("experiments")  # from . import x
    found = fingerprint._imports(fingerprint.ast.parse(
        "import genviz_lib.volume\nfrom genviz_lib import data\nfrom genviz_lib.models import MLP"), "")
    assert {m for m in found if m in TABLE} == {"volume", "data", "models"}
    found = fingerprint._imports(fingerprint.ast.parse("from ...x import y"), "experiments")
    assert not found  # above the package: not genviz_lib's
