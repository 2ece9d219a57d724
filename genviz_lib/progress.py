"""A progress line that stays one line everywhere.

In a Jupyter kernel (Colab, Binder, Jupyter) it is one display output updated in place; in a
terminal it is a ``tqdm`` bar; elsewhere (pytest, logs) it is silent. In the book's build
(``GENVIZ_BOOK_BUILD=1``, where nobody watches the bar) nothing is drawn while the work runs, and a
long piece of work (:data:`BOOK_MIN_SECONDS` or more) leaves one printed summary line in the page:
what ran, how many steps, how long, and how it ended.
"""

from __future__ import annotations

import sys
import time

from .config import in_book_build

#: In the book build, work shorter than this leaves no line in the page.
BOOK_MIN_SECONDS = 20.0


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class Progress:
    """``with Progress(total, "training") as bar: bar.update(1, loss=0.3)``."""

    def __init__(self, total: int, desc: str = "", enabled: bool = True, min_interval: float = 0.5):
        self.total, self.desc, self.n = int(total), desc, 0
        self.min_interval, self.start, self.last_draw = min_interval, time.perf_counter(), 0.0
        self.info: dict = {}
        self._handle = self._tqdm = None
        self._summary = False
        if not enabled:
            return
        if in_book_build():
            self._summary = True
        elif _in_kernel():
            from IPython.display import Pretty, display

            self._handle = display(Pretty(self._text()), display_id=True)
        elif sys.stderr.isatty():
            from tqdm import tqdm

            self._tqdm = tqdm(total=self.total, desc=desc, leave=True)

    def _info(self) -> str:
        return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.info.items())

    def _text(self) -> str:
        elapsed = time.perf_counter() - self.start
        width = 24
        filled = int(width * self.n / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        return f"{self.desc} [{bar}] {self.n}/{self.total} · {elapsed:.1f} s  {self._info()}".rstrip()

    def summary(self) -> str:
        """The one line a finished piece of work leaves in the book: ``desc: n steps in t s (info)``."""
        info = self._info()
        return f"{self.desc}: {self.n:,} steps in {time.perf_counter() - self.start:.0f} s" + (f" ({info})" if info else "")

    def update(self, n: int = 1, **info) -> None:
        self.n += n
        self.info.update(info)
        if self._tqdm is not None:
            self._tqdm.update(n)
            if info:
                self._tqdm.set_postfix(info, refresh=False)
        elif self._handle is not None and time.perf_counter() - self.last_draw >= self.min_interval:
            self.last_draw = time.perf_counter()
            self._draw()

    def _draw(self) -> None:
        from IPython.display import Pretty

        self._handle.update(Pretty(self._text()))

    def close(self, total: int | None = None) -> None:
        """Finish the line; ``total`` shortens the bar when a run stops early."""
        if total is not None:
            self.total = total
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._handle is not None:
            self._draw()
        elif self._summary and time.perf_counter() - self.start >= BOOK_MIN_SECONDS:
            self._summary = False  # once, even if closed again
            print(self.summary())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
