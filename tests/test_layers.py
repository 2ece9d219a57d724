"""The library's layers point one way: measures and figures never reach up to the trainer."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "genviz_lib"
MEASURES = ["boundaries", "landscape", "volume", "curvature", "sharpness", "norms", "viz", "losses"]


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genviz_lib"):
            found |= {node.module.split(".", 1)[1]} if "." in node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("genviz_lib.")}
    return found


@pytest.mark.parametrize("module", MEASURES)
def test_measures_do_not_import_the_trainer(module):
    assert "train" not in _imports(module) and "experiments" not in _imports(module)


def test_the_import_checker_sees_relative_imports():
    assert {"losses", "data"} <= _imports("train") and "train" in _imports("experiments")
