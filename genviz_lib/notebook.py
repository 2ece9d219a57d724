"""What a chapter takes from the notebook it runs in, working the same in every place it runs.

A chapter runs in four places: the book build (Jupyter Book, which has myst-nb), papermill (CI),
Colab and Binder. Only the first can put a computed value into the prose, through myst-nb's
``glue`` and the ``{glue:text}`` role. :func:`glue` hands values to myst-nb during the book build and
prints them everywhere else, where the launch notebook's text shows the value's name, ``⟨name⟩``, in
its place (``tools/launch_notebooks.py`` writes it so).

The book build is recognised by ``GENVIZ_BOOK_BUILD=1``, which the book's Sphinx extension
(``book/_ext/genviz_book.py``) sets before any chapter executes, so that every kernel the build starts
inherits it. Importing myst-nb is not a test: Binder's environment has myst-nb too, and there the
reader needs to see the values.
"""

from __future__ import annotations

from typing import Any

import torch

from . import config, data
from .config import BOOK_BUILD, in_book_build  # noqa: F401 (part of this module's interface)


def placeholder(name: str) -> str:
    """How a launch notebook's prose writes a glued value that it cannot compute: ``⟨name⟩``."""
    return f"⟨{name}⟩"


def glue(name: str, value: Any, display: bool = True) -> None:
    """Give ``value`` the name ``name`` for the chapter's prose.

    In the book build this is ``myst_nb.glue`` (the ``{glue:text}`` role then prints the value where the
    text names it). Elsewhere it prints ``⟨name⟩ = value``, the line a launch notebook's text points at,
    and, when ``display`` is true and the value is not a plain string or number, shows the value itself.
    """
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"glue name {name!r} must be letters, digits and '_' (the prose refers to it)")
    if in_book_build():
        from myst_nb import glue as myst_glue

        myst_glue(name, value, display=display)
        return
    if isinstance(value, (str, int, float)) or not display:
        print(f"{placeholder(name)} = {value}")
    else:
        from IPython.display import display as show

        print(f"{placeholder(name)}:")
        show(value)


def setup(profile: str | None, needs: tuple[str, ...] = (), full_needs: tuple[str, ...] = (),
          threads: int | None = 2) -> tuple[config.Profile, config.ResultsCache]:
    """A chapter's set-up in one call: ``profile, cache = setup(PROFILE, needs=["fashion-mnist"])``.

    Checks the profile name (a wrong one stops here, naming the valid ones), makes sure the data sets the
    chapter ``needs`` — and, in the ``full`` profile, ``full_needs`` too — are on this machine (downloading
    them in Colab and on Binder; see :func:`~genviz_lib.data.require`), so that a reader without them gets
    one clear error before any training, and sets PyTorch's threads: ``threads`` in ``quick`` and ``book``
    (2, what the book is timed with), every core in ``full``. Prints the profile and returns it with the
    results cache.
    """
    p = config.get_profile(profile)
    cache = config.get_cache()
    data.require(*needs, *(full_needs if p.name == "full" else ()))
    if threads is not None and p.name != "full":
        torch.set_num_threads(threads)
    print(f"profile {p}" + ("" if cache.enabled else " (results cache off: GENVIZ_NO_CACHE)"))
    return p, cache
