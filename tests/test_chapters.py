"""The book's sources hang together: pairs in sync, parameters cells, install cells, citations."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_chapters():
    assert CHAPTERS, "no chapters found in chapters/"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_markdown_and_notebook_are_in_sync(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `make sync`"
    paired = nbformat.read(ipynb, as_version=4)
    assert _cells(jupytext.read(md)) == _cells(paired), f"{ipynb.name} is out of date: run `make sync`"
    assert paired.metadata["kernelspec"]["name"] == "python3"  # Colab and the launch buttons need it
    assert all(not c.get("outputs") for c in paired.cells if c.cell_type == "code"), "commit the pair without outputs"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_first_code_cell_installs_the_library_in_colab(md):
    code = [c for c in jupytext.read(md).cells if c.cell_type == "code"]
    first = code[0].source
    assert 'if "google.colab" in sys.modules' in first
    assert f"git+{CONFIG['repository']['url'].rstrip('/')}" in first, "install URL differs from _config.yml: run `make sync`"


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
