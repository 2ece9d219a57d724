"""The book's own Sphinx extension: tells the chapters that they are executing for the published book.

Jupyter Book executes each chapter in a kernel started by this build process, and a kernel inherits
the environment of the process that starts it. Setting ``GENVIZ_BOOK_BUILD=1`` here, before any
chapter executes, makes ``genviz_lib.notebook.glue`` hand its values to myst-nb (the ``{glue:text}``
roles of the page) instead of printing them, as it does in Colab, Binder and papermill runs.
"""

import os


def setup(app):
    os.environ["GENVIZ_BOOK_BUILD"] = "1"
    return {"parallel_read_safe": True, "parallel_write_safe": True}
