"""The book's sources hang together: parameters cells, install cells, imports, data checks, citations."""

import ast
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
    uses = [i for i, src in enumerate(code) if re.search(r"fashion|image_minimizers|Images|normalized_|Normalized", src)]
    if not uses:
        return
    require = [i for i, src in enumerate(code) if DATA_CHECK.search(src)]
    trains = [i for i, src in enumerate(code)
              if re.search(r"train\.train|cache\.(cached|map)|huang2020\.|wu2017\.|neyshabur2017\.|poggio2020\.", src)
              and not DATA_CHECK.search(src)]
    assert require and require[0] <= min(uses + trains), \
        'set up with setup(PROFILE, needs=["fashion-mnist"]) (or data.require) before any training'


DATA_CHECK = re.compile(r"data\.require\(|setup\(PROFILE,\s*needs=")


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
    for info in pkgutil.walk_packages(genviz_lib.__path__, "genviz_lib."):
        assert f".. automodule:: {info.name}" in page, f"book/api.md misses {info.name}"
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert obj.__doc__ and obj.__doc__.strip(), f"{info.name}.{name} has no docstring"
    assert "file: book/api" in (ROOT / "_toc.yml").read_text()


def _code_cells(md):
    """``(tags, lines)`` of every code cell of a chapter."""
    return [(c.metadata.get("tags", []), c.source.strip("\n").splitlines())
            for c in jupytext.read(md).cells if c.cell_type == "code"]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_chapter_code_fits_the_page(md):
    # The HTML shows a code cell at full length and scrolls sideways beyond about 100 columns: a shown cell
    # is at most 15 lines (12 where possible), and no line of any cell is wider than 100 columns.
    hidden = {"hide-input", "remove-cell", "remove-input", "parameters"}
    cells = _code_cells(md)
    long_cells = [len(lines) for tags, lines in cells if not hidden & set(tags) and len(lines) > 15]
    assert not long_cells, f"shown code cells of {long_cells} lines: at most 15"
    wide = [line for _, lines in cells for line in lines if len(line) > 100]
    assert not wide, f"{len(wide)} code lines over 100 columns, the first: {wide[0]!r}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_glue_is_called_in_removed_cells_only(md):
    shown = [lines for tags, lines in _code_cells(md) if "remove-cell" not in tags]
    assert not [line for lines in shown for line in lines if re.match(r"\s*glue\(", line)], \
        "glue(...) belongs in a remove-cell cell: the reader sees the value in the prose"


SUMMARY = "```{admonition} What this chapter showed"


@pytest.mark.parametrize("md", [p for p in CHAPTERS if p.name[:2] in {f"0{i}" for i in range(7)}],
                         ids=lambda p: p.name)
def test_chapters_0_to_6_end_with_what_they_showed_in_their_own_numbers(md):
    text = md.read_text()
    assert text.count(SUMMARY) == 1, f"{md.name}: one '{SUMMARY}' box"
    box = text[text.index(SUMMARY):]
    box = box[:box.index("\n```\n")]
    assert text.index(SUMMARY) < text.index("\n## Exercises"), "the box closes the chapter's text"
    assert len(re.findall(r"\{glue:text\}`\w+`", box)) >= 3, "the box quotes its key numbers from the runs"


def test_the_conclusion_has_a_figure_of_the_evidence():
    text = (ROOT / "chapters" / "07_conclusion.md").read_text()
    figures = re.findall(r"mystnb:\n  figure:\n    name: (fig-ch7-[\w-]+)", text)
    assert figures, "chapter 7 draws at least one figure"
    assert any(f"{{numref}}`{name}`" in text for name in figures), "and the prose cites it by number"


FIGURE_PAGES = CHAPTERS + sorted(p for p in (ROOT / "book").glob("*.md") if p.read_text().startswith("---"))


@pytest.mark.parametrize("md", FIGURE_PAGES, ids=lambda p: p.name)
def test_a_figure_cell_shows_its_figure_once(md):
    # A figure cell whose last line returns an object (a Legend, a Colorbar) shows its repr beside the figure,
    # and the book then names two outputs after the figure (a duplicate target, which fails the build).
    quiet = {"tight_layout", "show"}  # calls that return None
    for cell in jupytext.read(md).cells:
        if cell.cell_type != "code" or "figure" not in cell.metadata.get("mystnb", {}):
            continue
        last = ast.parse(cell.source).body[-1]
        if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
            called = last.value.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            assert name in quiet or cell.source.rstrip().endswith(";"), \
                f"{cell.metadata['mystnb']['figure']['name']}: end its last line with ';'"
