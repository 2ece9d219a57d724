"""What every benchmark shares: timing, peak-memory measurement and the report format.

A benchmark returns a :class:`Row`: the work, genviz's time and each other way's time on the same work
(plain reference paths and peer libraries), and notes. :func:`Row.lines` prints them with the ratio
``other / genviz`` (above 1: genviz is faster).
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import gc
import statistics
import time

import torch

from genviz_lib import landscape, losses


def timed(fn):
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def best_of(fn, repeats: int = 5, warmup: int = 1):
    """``(last result, median seconds)`` of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        out, t = timed(fn)
        times.append(t)
    return out, statistics.median(times)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory(fn):
    """``(fn(), seconds, extra peak resident bytes)``: the high-water mark of the process's resident set
    during ``fn`` above what was resident when it started (Linux: ``/proc/self/clear_refs`` resets it)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _rss_kib("VmRSS")
    out, seconds = timed(fn)
    return out, seconds, (_rss_kib("VmHWM") - before) * 1024


@dataclasses.dataclass
class Row:
    """One benchmark: ``genviz`` is ``(label, seconds)``; ``others`` the same work done other ways."""

    name: str
    genviz: tuple[str, float]
    others: list[tuple[str, float]]
    notes: list[str] = dataclasses.field(default_factory=list)
    unit: str = "s"

    def _fmt(self, t: float) -> str:
        return f"{t * 1e3:9.3f} ms" if self.unit == "ms" else f"{t:9.3f} s "

    def lines(self) -> list[str]:
        label, t = self.genviz
        out = [self.name, f"  genviz    {self._fmt(t)}  {label}"]
        for other, t_other in self.others:
            out.append(f"  other     {self._fmt(t_other)}  {other}   ratio {t_other / t:5.2f}×")
        out += [f"  {note}" for note in self.notes]
        return out


def _loop_objective(model, X, y):
    """The plain way: write each parameter vector into the model and run a forward pass."""
    probe = copy.deepcopy(model).eval()

    @torch.no_grad()
    def f(Theta):
        out = []
        for theta in Theta:
            landscape.unflatten(probe, theta)
            out.append(losses.cross_entropy(probe(X), y).mean())
        return torch.stack(out)

    return f


def _steady_allocator() -> str:
    """Keep glibc from handing large tensors back to the OS between forward passes.

    With its default (dynamic) thresholds, glibc serves a multi-megabyte activation from a fresh
    ``mmap`` or a freshly grown heap at unpredictable times, and the page faults can double the time
    of a conv net's forward pass — so whichever path ran first looked 1.7× faster or slower. Fixed
    thresholds make both paths pay the same; it changes nothing else."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        return "glibc thresholds fixed" if ok else "glibc mallopt refused"
    except OSError:
        return "not glibc: allocator left as is"
