"""The launch notebooks (what Colab, Binder and the download button open) read as prose and match the sources."""

import re
import shutil
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import launch_notebooks  # noqa: E402
import sync_chapters  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
RAW_MYST = re.compile(r"\{(glue|cite|func|ref|numref|eq|doc|class|meth|mod|math)(:\w*)?\}`"
                      r"|^\s*[`~]{3,}\{[\w-]+\}|^\s*:(label|class|tags|name):|^\s*\([\w-]+\)=\s*$", re.M)


def _cells(nb):
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


def _markdown(nb):
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_launch_notebook_is_generated_from_its_chapter(md):
    committed = md.with_suffix(".ipynb")
    assert committed.exists(), f"{committed.name} is missing: run `make sync`"
    nb = nbformat.read(committed, as_version=4)
    assert _cells(nb) == _cells(launch_notebooks.launch_notebook(md)), f"{committed.name} is out of date: run `make sync`"
    assert nb.metadata["kernelspec"]["name"] == "python3"  # Colab and the launch buttons need it
    assert "jupytext" not in nb.metadata  # not a jupytext pair: the .md is the one source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it without outputs"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_launch_notebook_markdown_holds_no_raw_myst(md):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    text = _markdown(nb)
    raw = RAW_MYST.findall(text)
    assert not raw, f"{md.with_suffix('.ipynb').name} shows MyST markup raw: {raw[:5]}"
    source = md.read_text()
    exercises = source.count("```{exercise}")
    assert text.count("<details>") == source.count("{solution}") and text.count("#### Exercise ") == exercises
    assert len(re.findall(r"<details>\n<summary><b>Solution to Exercise \d+</b></summary>", text)) == text.count("<details>")
    if "{cite" in source:
        assert "## Works cited" in text
    assert not re.search(r"\(\d{4}[a-z]?\) \(|\([^()]* \(\d{4}[a-z]?\)\)", text), "a citation in double parentheses"
    headings_inside = [c.source for c in nb.cells if c.cell_type == "markdown"
                       and any(re.match(r"#{1,6} ", line) for line in c.source.split("\n")[1:])
                       and "```" not in c.source]
    assert not headings_inside, "each section starts its own cell (Jupyter's outline works cell by cell)"
    assert text.count("**Figure ") == source.count("  figure:\n")  # each figure's caption under it


def test_translation_of_each_construct():
    md_text = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

# Title

(sec-a)=
## A section

{cite:t}`huang2020understanding` and {cite:p}`wu2017towards,neyshabur2017exploring` measured
{glue:text}`ch_acc`; see {numref}`fig-x` and {func}`~genviz_lib.volume.basin_radius`. A literal: `{glue:text}`.

```{code-cell} ipython3
---
mystnb:
  figure:
    name: fig-x
    caption: The loss, after {cite:t}`li2018visualizing`.
---
x = 1
```

```{admonition} Why
:class: tip
Because.
```

```{exercise}
:label: ex-a

Do it.
```

````{solution} ex-a
:class: dropdown

```python
print("{glue:text}`not_a_role`")
```
````

## More

Also (e.g. {cite:t}`huang2020understanding`) and {cite:t}`huang2020understanding` (§2,
Fig. 1).
"""
    tmp = ROOT / "_build" / "test-launch"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "chapters").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", tmp)
    (tmp / "book").mkdir()
    shutil.copy(ROOT / "book" / "references.bib", tmp / "book")
    (tmp / "chapters" / "x.md").write_text(md_text)
    nb = launch_notebooks.launch_notebook(tmp / "chapters" / "x.md", root=tmp)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    site = launch_notebooks.pages_url(launch_notebooks.book_config(tmp))
    assert md[0] == "# Title" and "genviz book" in md[1]  # the note on how to read the notebook, under the title
    assert md[2].startswith("## A section\n\nHuang et al. (2020) and (Wu et al., 2017; Neyshabur et al., 2017) "
                            "measured\n`⟨ch_acc⟩`; see Figure 1 and "
                            f"[`basin_radius()`]({site}book/api.html#genviz_lib.volume.basin_radius). "
                            "A literal: `{glue:text}`.")
    assert md[3] == "**Figure 1.** The loss, after Li et al. (2018)."
    assert md[4] == "> **Why**\n>\n> Because."
    assert md[5] == "#### Exercise 1\n\nDo it."
    assert md[6].startswith("<details>\n<summary><b>Solution to Exercise 1</b></summary>")
    assert '```python\nprint("{glue:text}`not_a_role`")\n```' in md[6] and md[6].endswith("</details>")
    assert md[7] == "## More\n\nAlso (e.g. Huang et al., 2020) and Huang et al. (2020, §2,\nFig. 1)."
    assert md[-1].startswith("## Works cited\n\n- **Huang et al. (2020)**.")
    assert md[-1].count("\n- ") == 4 - 1 + 1  # four works, one line each
    (tmp / "chapters" / "y.md").write_text(md_text.replace("{numref}`fig-x`", "{term}`x` {badrole}`x`"))
    with pytest.raises(ValueError, match=r"y: unknown role \{badrole\}"):
        launch_notebooks.launch_notebook(tmp / "chapters" / "y.md", root=tmp)


def test_the_download_notebook_carries_the_run_and_its_numbers():
    md = ROOT / "chapters" / "00_first_experiment.md"
    run = jupytext.read(md)  # the notebook the book build executes: the source's cells, solution markers and all
    assert any("### BEGIN SOLUTION" in c.source for c in run.cells)
    code = [c for c in run.cells if c.cell_type == "code"]
    for k, cell in enumerate(code):
        cell.outputs = [nbformat.v4.new_output("stream", text=f"output {k}\n")]
        cell.execution_count = k + 1
    glued = {"good_test": {"data": {"text/plain": "'97.0%'"}}, "n_params": {"data": {"text/plain": "3614"}}}
    nb = launch_notebooks.executed_notebook(md, run, glued)
    text = _markdown(nb)
    assert "right 97.0% of the time" in text and "3614 parameters in all" in text
    assert "`⟨good_train⟩`" in text  # a name the run did not glue stays a visible pointer
    assert [c.outputs[0].text for c in nb.cells if c.cell_type == "code"] == [f"output {k}\n" for k in range(len(code))]
    assert "outputs and the numbers of the run" in text
    code[1].source += "\n# edited"
    with pytest.raises(ValueError, match="code cells differ"):
        launch_notebooks.executed_notebook(md, run, glued)


def test_placeholders_agree_with_the_library():
    from genviz_lib import notebook

    assert launch_notebooks.PLACEHOLDER.format("acc") == f"`{notebook.placeholder('acc')}`"


def test_the_book_can_be_published_under_any_repository():
    tmp = ROOT / "_build" / "test-publish"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("_config.yml",):
        shutil.copy(ROOT / name, tmp)
    shutil.copytree(ROOT / "book", tmp / "book", ignore=shutil.ignore_patterns("static"))
    shutil.copytree(ROOT / "chapters", tmp / "chapters", ignore=shutil.ignore_patterns("*.ipynb"))
    sync_chapters.set_repository_url("https://github.com/Some-Lab/gen-viz-fork", root=tmp)
    config = launch_notebooks.book_config(tmp)
    assert config["repository"]["url"] == "https://github.com/Some-Lab/gen-viz-fork"
    assert launch_notebooks.pages_url(config) == "https://some-lab.github.io/gen-viz-fork/"
    sync_chapters.sync(root=tmp)
    for md in sorted((tmp / "chapters").glob("*.md")):
        first = next(c for c in nbformat.read(md.with_suffix(".ipynb"), as_version=4).cells if c.cell_type == "code")
        assert "git+https://github.com/Some-Lab/gen-viz-fork" in first.source
        text = md.with_suffix(".ipynb").read_text()
        assert "genviz-book" not in text and "https://some-lab.github.io/gen-viz-fork/" in text
    with pytest.raises(SystemExit, match="not a repository URL"):
        sync_chapters.set_repository_url("github.com/x", root=tmp)
