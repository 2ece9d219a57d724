"""Fingerprints change with the code and only with the code; cache keys follow them."""

import importlib.util
import shutil
import sys

import pytest

from genviz_lib import config, fingerprint
from genviz_lib.experiments import huang2020


@pytest.fixture
def library(tmp_path):
    copy = tmp_path / "genviz_lib"
    shutil.copytree(fingerprint.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _fingerprint(root, modules=None):
    fingerprint._modules.cache_clear()  # the files changed within this process
    return fingerprint.library_fingerprint(modules, root=root)


def test_prose_does_not_count_code_does(library):
    before = {m: _fingerprint(library, [m]) for m in ("volume", "experiments", "data")}
    volume = library / "volume.py"
    volume.write_text(volume.read_text().replace('"""Basin', '"""The basin', 1) + "\n# a comment\n")
    assert {m: _fingerprint(library, [m]) for m in before} == before
    volume.write_text(volume.read_text() + "\n\ndef harmless():\n    return 1\n")
    after = {m: _fingerprint(library, [m]) for m in before}
    assert after["volume"] != before["volume"] and after["experiments"] != before["experiments"]
    assert after["data"] == before["data"]  # data imports nothing from volume
    assert _fingerprint(library) != _fingerprint(fingerprint.PACKAGE)


def test_unknown_modules_are_refused():
    with pytest.raises(ValueError, match=r"no genviz_lib module \['nope'\]"):
        fingerprint.library_fingerprint(["nope"])


def test_a_library_recipe_is_keyed_on_its_module_and_what_it_imports():
    expected = fingerprint.library_fingerprint(["experiments.huang2020"])[:24]
    assert fingerprint.code_fingerprint(huang2020.poison_sweep) == expected
    table = fingerprint._modules(fingerprint.PACKAGE)
    imports = {m for m in table["experiments.huang2020"][1] if m in table}
    assert {"data", "train", "volume", "experiments.settings"} <= imports
    assert "experiments" not in imports  # the package's __init__ only lists the modules


def test_a_recipe_module_of_the_experiments_package_is_keyed_on_what_it_imports(library):
    names = ["experiments.huang2020", "experiments.poggio2020", "experiments.wu2017", "volume"]
    before = {m: _fingerprint(library, [m]) for m in names}
    recipe = library / "experiments" / "poggio2020.py"
    recipe.write_text(recipe.read_text() + "\n\ndef harmless():\n    return 1\n")
    after = {m: _fingerprint(library, [m]) for m in names}
    assert after["experiments.poggio2020"] != before["experiments.poggio2020"]
    assert after["experiments.huang2020"] == before["experiments.huang2020"]  # it does not import poggio2020
    volume = library / "volume.py"
    volume.write_text(volume.read_text() + "\n\ndef harmless():\n    return 1\n")
    again = {m: _fingerprint(library, [m]) for m in names}
    assert again["experiments.huang2020"] != after["experiments.huang2020"]  # basin_summary measures volumes
    assert again["experiments.poggio2020"] == after["experiments.poggio2020"]  # chapter 5 measures none


def test_editing_a_recipe_changes_its_cache_key(tmp_path):
    recipe = tmp_path / "recipe_mod.py"
    recipe.write_text('def run():\n    """Train something."""\n    return 1\n')

    def key():
        spec = importlib.util.spec_from_file_location("recipe_mod", recipe)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return config.ResultsCache(tmp_path / "cache").key("r", {"n": 1}, fingerprint.code_fingerprint(module.run))

    first = key()
    assert key() == first
    recipe.write_text('def run():\n    """Train something else, the docstring says."""\n    return 1\n')
    assert key() == first  # a docstring is prose
    recipe.write_text('def run():\n    """Train something."""\n    return 2  # a new recipe\n')
    assert key() != first
    sys.modules.pop("recipe_mod", None)


def test_the_cache_recomputes_when_the_recipe_changes(tmp_path):
    cache = config.ResultsCache(tmp_path)
    assert cache.cached("r", {"n": 1}, lambda: 1) == 1
    assert cache.cached("r", {"n": 1}, lambda: 1) == 1  # the same code: read back
    assert cache.cached("r", {"n": 1}, lambda: 2) == 2  # other code, same settings: recomputed
