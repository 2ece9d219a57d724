"""The book's own Sphinx extension.

1. It tells the chapters that they execute for the published book. Jupyter Book executes each chapter
   in a kernel started by this build process, and a kernel inherits the environment of the process that
   starts it: ``GENVIZ_BOOK_BUILD=1``, set here before any chapter executes, makes
   ``genviz_lib.notebook.glue`` hand its values to myst-nb (the ``{glue:text}`` roles of the page)
   instead of printing them, as it does in Colab, Binder and papermill runs.
2. It replaces the notebook behind each chapter page's download button (by default the executed MyST
   source, whose roles and directives Jupyter shows raw) with the chapter's launch notebook carrying
   that same run's outputs, the glued values written into its text (``tools/launch_notebooks.py``).
"""

import json
import os
import sys
from pathlib import Path


def setup(app):
    os.environ["GENVIZ_BOOK_BUILD"] = "1"
    app.connect("build-finished", write_reader_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def write_reader_notebooks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    import nbformat

    root = Path(app.srcdir)
    sys.path.insert(0, str(root / "tools"))
    import launch_notebooks

    executed = Path(app.outdir).parent / "jupyter_execute"
    for md in sorted((root / "chapters").glob("*.md")):
        run = executed / "chapters" / f"{md.stem}.ipynb"
        target = Path(app.outdir) / "_sources" / "chapters" / f"{md.stem}.ipynb"
        if not run.exists() or not target.parent.exists():
            continue
        store = run.with_suffix(".glue.json")
        glued = json.loads(store.read_text()) if store.exists() else {}
        nb = launch_notebooks.executed_notebook(md, nbformat.read(run, as_version=4), glued, root)
        nbformat.write(nb, target)
