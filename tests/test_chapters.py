"""The book's sources hang together: parameters cells, install cells, imports, data checks, citations."""

import re
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def test_there_are_chapters():
    assert CHAPTERS, "no chapters found in chapters/"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_first_code_cell_installs_the_library_in_colab(md):
    code = [c for c in jupytext.read(md).cells if c.cell_type == "code"]
    first = code[0].source
    assert 'if "google.colab" in sys.modules' in first
    assert f"git+{CONFIG['repository']['url'].rstrip('/')}" in first, "install URL differs from _config.yml: run `make sync`"


BOOK_ONLY = re.compile(r"^\s*(from|import)\s+(myst_nb|jupyter_book|sphinx\w*|jupyter_cache)\b", re.M)


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_chapters_import_nothing_that_only_the_book_build_has(md):
    code = "\n".join(c.source for c in jupytext.read(md).cells if c.cell_type == "code")
    assert not BOOK_ONLY.findall(code), "Colab and Binder readers have no book build: go through genviz_lib"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_chapters_check_their_data_before_training(md):
    code = [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]
    uses = [i for i, src in enumerate(code) if re.search(r"fashion|image_minimizers|image_settings|normalized_", src)]
    if not uses:
        return
    require = [i for i, src in enumerate(code) if "data.require(" in src]
    trains = [i for i, src in enumerate(code) if re.search(r"train\.train|cache\.(cached|map)|experiments\.", src)]
    assert require and require[0] <= min(uses + trains), "call data.require(...) in the set-up cell, before training"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_parameters_cell_defines_the_profile(md):
    cells = [c for c in jupytext.read(md).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged `parameters`"
    namespace = {}
    exec(cells[0].source, namespace)
    assert namespace["PROFILE"] in ("quick", "book", "full")


def test_every_citation_is_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = CHAPTERS + sorted((ROOT / "book").glob("*.md"))
    cited = {k.strip() for path in sources
             for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text()) for k in group.split(",")}
    assert cited, "no citations found"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_toc_lists_every_chapter():
    toc = (ROOT / "_toc.yml").read_text()
    for md in CHAPTERS:
        assert f"chapters/{md.stem}" in toc, f"{md.name} is not in _toc.yml"


def test_widget_javascript_is_vendored():
    static = ROOT / CONFIG["sphinx"]["config"]["html_static_path"][0]
    for path in CONFIG["sphinx"]["config"]["nb_ipywidgets_js"]:
        assert not path.startswith("http"), "widget JavaScript must be served by the book"
        assert (static / path).stat().st_size > 10_000
    assert (static / CONFIG["sphinx"]["config"]["mathjax_path"]).exists()


def test_api_appendix_documents_every_module_and_public_function():
    import importlib
    import inspect
    import pkgutil

    import genviz_lib

    page = (ROOT / "book" / "api.md").read_text()
    for info in pkgutil.iter_modules(genviz_lib.__path__):
        assert f".. automodule:: genviz_lib.{info.name}" in page, f"book/api.md misses genviz_lib.{info.name}"
        module = importlib.import_module(f"genviz_lib.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert obj.__doc__ and obj.__doc__.strip(), f"genviz_lib.{info.name}.{name} has no docstring"
    assert "file: book/api" in (ROOT / "_toc.yml").read_text()
