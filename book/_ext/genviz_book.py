"""The book's own Sphinx extension.

1. It tells the chapters that they execute for the published book. Jupyter Book executes each chapter
   in a kernel started by this build process, and a kernel inherits the environment of the process that
   starts it: ``GENVIZ_BOOK_BUILD=1``, set here before any chapter executes, makes
   ``genviz_lib.notebook.glue`` hand its values to myst-nb (the ``{glue:text}`` roles of the page)
   instead of printing them, as it does in Colab, Binder and papermill runs.
2. It re-executes every chapter when ``genviz_lib``'s code changed since the chapter last executed. The
   execution cache (jupyter-cache) hashes a notebook's code cells and their metadata, not the library they
   import, and Sphinx re-reads a page only when its source changed; so the library's fingerprint
   (:func:`genviz_lib.fingerprint.library_fingerprint`) is written into the metadata of each chapter's
   first code cell as it is read, and a changed fingerprint marks every chapter outdated. An unchanged
   library and unchanged chapters execute nothing.
3. It replaces the notebook behind each chapter page's download button (by default the executed MyST
   source, whose roles and directives Jupyter shows raw) with the chapter's launch notebook carrying
   that same run's outputs, the glued values written into its text (``tools/launch_notebooks.py``).
4. It publishes the data a chapter wrote for its readers: every file ``data/results/<name>-<profile>.csv``
   (or ``.json``, or ``<name>-<profile>-<part>.csv``) of this build's profile (``GENVIZ_PROFILE``, else ``book``),
   and every committed result of a ``full`` run (``<name>-full…``, exported by the sweep), is copied to
   ``data/results/`` of the HTML output,
   where the chapters' links point. A link the chapter prints to a file that is not there is a warning
   (an error under ``-W``), so a page never links to data that is missing, and no other profile's files are
   published beside it.
5. It shows a coding exercise's solution as a reader should see it: the code cells of a solution (a gated
   ``{solution-start}`` … ``{solution-end}`` block) lose nbgrader's ``### BEGIN SOLUTION`` / ``### END
   SOLUTION`` and ``### BEGIN HIDDEN TESTS`` lines, which are for the assignment tools. With
   ``hide_solutions: true`` (the student build of ``make assignments``) it removes every solution from the
   pages, gated ones included: sphinx-exercise's own option (1.0.1) drops a ``{solution}`` block but leaves a
   gated solution's cells on the page and its end marker in the tree, which the HTML writer then rejects; so
   this extension takes the option over and removes the solutions itself.
"""

import json
import os
import re
import sys
from pathlib import Path

FIRST_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n", re.M)


def setup(app):
    os.environ["GENVIZ_BOOK_BUILD"] = "1"
    app.connect("env-get-outdated", outdated_by_the_library)
    app.connect("source-read", stamp_the_library)
    app.connect("build-finished", write_reader_notebooks)
    app.connect("build-finished", publish_results)
    app.add_config_value("genviz_hide_solutions", False, "env")
    app.connect("config-inited", take_over_hide_solutions)
    app.connect("doctree-read", solutions_for_readers)
    app.connect("env-get-updated", number_chapter_zero, priority=900)  # after the numbering
    return {"parallel_read_safe": True, "parallel_write_safe": True}


CHAPTER_ZERO = "chapters/00_first_experiment"


def number_chapter_zero(app, env):
    """Chapter 0 sits before the numbered part, so Sphinx numbers its figures and exercises on with the pages
    before it (Fig. 2, Exercise 1) while every other chapter's read N.1, N.2, ...: number chapter 0's
    0.1, 0.2, ... in their order on the page, and have the page written again with them."""
    for numbers in env.toc_fignumbers.get(CHAPTER_ZERO, {}).values():
        if all(len(number) == 1 for number in numbers.values()):  # assigned afresh by Sphinx
            for rank, key in enumerate(sorted(numbers, key=numbers.get), start=1):
                numbers[key] = (0, rank)
    return [CHAPTER_ZERO] if CHAPTER_ZERO in env.found_docs else []


def _fingerprint() -> str:
    from genviz_lib.fingerprint import library_fingerprint

    return library_fingerprint()[:24]


def _chapters(env) -> list[str]:
    return sorted(d for d in env.found_docs if d.startswith("chapters/"))


def outdated_by_the_library(app, env, added, changed, removed):
    """Every chapter, when the library's fingerprint differs from the one its last reading saw."""
    current = _fingerprint()
    previous = getattr(env, "genviz_lib_fingerprint", None)
    env.genviz_lib_fingerprint = current
    return _chapters(env) if previous not in (None, current) else []


def stamp_the_library(app, docname, source):
    """Write the library's fingerprint into the first code cell's options (its metadata, which the
    execution cache hashes): the chapter's cached execution then belongs to this library only."""
    if not docname.startswith("chapters/"):
        return
    text = source[0]
    m = FIRST_CELL.search(text)
    if m:
        source[0] = text[:m.end()] + f":genviz_lib: {_fingerprint()}\n" + text[m.end():]


def _launch_notebooks():
    """The book's notebook generator, ``tools/launch_notebooks.py`` of the checkout this extension is in."""
    tools = str(Path(__file__).resolve().parents[2] / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import launch_notebooks

    return launch_notebooks


def write_reader_notebooks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    import nbformat

    root = Path(app.srcdir)
    chapters = sorted((root / "chapters").glob("*.md"))
    if not chapters:
        return
    launch_notebooks = _launch_notebooks()
    executed = Path(app.outdir).parent / "jupyter_execute"
    for md in chapters:
        run = executed / "chapters" / f"{md.stem}.ipynb"
        target = Path(app.outdir) / "_sources" / "chapters" / f"{md.stem}.ipynb"
        if not run.exists() or not target.parent.exists():
            continue
        store = run.with_suffix(".glue.json")
        glued = json.loads(store.read_text()) if store.exists() else {}
        nb = launch_notebooks.executed_notebook(md, nbformat.read(run, as_version=4), glued, root)
        nbformat.write(nb, target)


RESULT_LINK = re.compile(r'href="\.\./data/results/([^"/]+)"')


def publish_results(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    import shutil

    from sphinx.util import logging

    from genviz_lib.config import results_dir

    profile = os.environ.get("GENVIZ_PROFILE", "book")
    source, target = results_dir(), Path(app.outdir) / "data" / "results"
    shutil.rmtree(target, ignore_errors=True)
    files = sorted(source.iterdir()) if source.is_dir() else []
    # <name>-<profile>.csv|json and <name>-<profile>-<part>.csv|json, and the committed results of `full` runs
    shown = "|".join(re.escape(p) for p in {profile, "full"})
    for f in files:
        if f.is_file() and re.fullmatch(rf"[\w.]+-({shown})(-[a-z]+)?\.(csv|json)", f.name):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target / f.name)
    log = logging.getLogger(__name__)
    for page in sorted((Path(app.outdir) / "chapters").glob("*.html")):
        for name in RESULT_LINK.findall(page.read_text()):
            if not (target / name).exists():
                log.warning(f"{page.name} links to data/results/{name}, which this build did not produce")


def take_over_hide_solutions(app, config):
    if config.hide_solutions:
        config.genviz_hide_solutions, config.hide_solutions = True, False


def solutions_for_readers(app, doctree):
    from docutils import nodes
    from sphinx_exercise.nodes import solution_node

    if app.config.genviz_hide_solutions:
        for node in list(doctree.findall(solution_node)):
            node.parent.remove(node)
    reader_code = _launch_notebooks().reader_code
    for block in list(doctree.findall(nodes.literal_block)):
        text = block.astext()
        if "### " in text and (shown := reader_code(text)) != text:
            block.replace(block.children[0], nodes.Text(shown))
            block.rawsource = shown
