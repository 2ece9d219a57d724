"""A progress line that stays one line everywhere.

In a Jupyter kernel (Colab, Binder, the book's build) it is one display output updated in place,
so the saved notebook and the static page keep only its last state; in a terminal it is a
``tqdm`` bar; elsewhere (pytest, logs) it is silent.
"""

from __future__ import annotations

import sys
import time


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
        if not enabled:
            return
        if _in_kernel():
            from IPython.display import Pretty, display

            self._handle = display(Pretty(self._text()), display_id=True)
        elif sys.stderr.isatty():
            from tqdm import tqdm

            self._tqdm = tqdm(total=self.total, desc=desc, leave=True)

    def _text(self) -> str:
        elapsed = time.perf_counter() - self.start
        width = 24
        filled = int(width * self.n / max(self.total, 1))
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.info.items())
        return f"{self.desc} [{'#' * filled}{'.' * (width - filled)}] {self.n}/{self.total} · {elapsed:.1f} s  {info}".rstrip()

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

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
