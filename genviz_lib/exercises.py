"""Check cells for the book's coding exercises: right, or "not yet" and a hint, never the answer.

An exercise asks the reader to compute something and store it under a name; the check cell below it calls
:func:`check` with that name and a way to tell a right answer:

>>> tau_a = 0.25
>>> check("tau_a", close_to=0.25, rtol=1e-6)
✓ tau_a is right.

- ``close_to``: a reference computed another way (``scipy``, the library's own routine), compared with a
  tolerance; the reference is never printed;
- ``within``: an interval ``(low, high)`` the answer must fall in (for a prediction, say);
- ``satisfies``: a function of the answer that is true for a right one (a property that is easy to verify
  and hard to fake, for example that ``H v = λ v`` for an eigenpair).

A check cell may also hold instructor-only tests (nbgrader's hidden tests), which a student's copy does not
show; its check then says ``hidden_tests=True`` and, when the answer passes, prints that it passed *the visible
check* rather than that it is right: the hidden tests may still reject it.

A wrong or missing answer raises :class:`NotYet`, which a notebook shows as one line, "Not yet: ..."
with the hint, without a traceback; nbgrader counts the cell as failed, so a check cell is also a graded
test cell. The value is looked up by name in the namespace of the caller (the notebook's), so that a
student whose solution cell still raises ``NotImplementedError`` gets "not yet defined" instead of a
``NameError``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_MISSING = object()


class NotYet(AssertionError):
    """An exercise's answer is missing or not right yet. Shown in a notebook as its message alone."""

    def __init__(self, name: str, reason: str, hint: str = ""):
        self.name, self.reason, self.hint = name, reason, hint
        super().__init__(f"Not yet: {reason}" + (f" Hint: {hint}" if hint else ""))

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [str(self)]


def check(name: str, *, close_to: Any = _MISSING, rtol: float = 1e-6, atol: float = 0.0,
          within: tuple[float, float] | None = None, satisfies: Callable[[Any], bool] | None = None,
          hint: str = "", hidden_tests: bool = False, namespace: dict | None = None) -> None:
    """Check the answer stored under ``name``; print "✓ name is right." or raise :class:`NotYet`.

    Exactly one of ``close_to``, ``within`` and ``satisfies`` says what a right answer is. ``close_to``
    compares numbers, arrays and tensors elementwise (``|answer − reference| ≤ atol + rtol·|reference|``,
    shapes equal); ``within`` asks for one number in a closed interval; ``satisfies`` calls a predicate.
    ``hidden_tests``: the cell goes on with tests the student does not see, so a pass is reported as
    "✓ name passes the visible check" (the grader's tests may still find it wrong), never as "right".
    ``namespace`` defaults to the caller's globals (the notebook's variables).
    """
    given = [close_to is not _MISSING, within is not None, satisfies is not None]
    if sum(given) != 1:
        raise TypeError("check() needs exactly one of close_to=, within= or satisfies=")
    if rtol < 0 or atol < 0:
        raise ValueError(f"tolerances must be non-negative, got rtol={rtol}, atol={atol}")
    if namespace is None:
        frame = inspect.currentframe().f_back
        namespace = frame.f_globals
        del frame
    value = namespace.get(name, _MISSING)
    if value is _MISSING:
        raise NotYet(name, f"`{name}` is not defined yet: write your code in the cell above, run it, then "
                     "run this cell.", hint)
    if close_to is not _MISSING:
        _close(name, value, close_to, rtol, atol, hint)
        tolerance = f" (to within {_tolerance(rtol, atol)})" if rtol or atol else ""
    elif within is not None:
        low, high = within
        number = _number(name, value, hint)
        if not low <= number <= high:
            raise NotYet(name, f"`{name}` is not in the range a right answer falls in.", hint)
        tolerance = ""
    else:
        try:
            ok = bool(satisfies(value))
        except Exception as error:  # the answer has the wrong type or shape for the property
            raise NotYet(name, f"`{name}` could not be checked ({type(error).__name__}: {error}).", hint) \
                from None
        if not ok:
            raise NotYet(name, f"`{name}` does not have the property a right answer has.", hint)
        tolerance = ""
    if hidden_tests:
        print(f"✓ {name} passes the visible check{tolerance}; the grader runs further tests.")
    else:
        print(f"✓ {name} is right{tolerance}.")


def _tolerance(rtol: float, atol: float) -> str:
    parts = ([f"{rtol:g} relative"] if rtol else []) + ([f"{atol:g} absolute"] if atol else [])
    return " + ".join(parts)


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None  # True is not the number 1, nor "0.25" the number 0.25: such an answer is a mistake
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return array


def _number(name: str, value: Any, hint: str) -> float:
    array = _as_array(value)
    if array is None or array.size != 1:
        raise NotYet(name, f"`{name}` should be one number, not {_describe(value)}.", hint)
    number = float(array.reshape(()))
    if not math.isfinite(number):
        raise NotYet(name, f"`{name}` is {number}, not a finite number.", hint)
    return number


def _describe(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"an array of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def _close(name: str, value: Any, reference: Any, rtol: float, atol: float, hint: str) -> None:
    want = _as_array(reference)
    if want is None:
        raise TypeError(f"the reference for {name!r} is not numeric: {reference!r}")
    got = _as_array(value)
    if got is None:
        raise NotYet(name, f"`{name}` should be numeric, not {_describe(value)}.", hint)
    if got.shape != want.shape:
        shape = "one number" if want.shape == () else f"shape {want.shape}"
        raise NotYet(name, f"`{name}` should have {shape}, not {_describe(value) if got.shape else 'one number'}.",
                     hint)
    if not np.all(np.isfinite(got)):
        raise NotYet(name, f"`{name}` has entries that are not finite numbers.", hint)
    if not np.all(np.abs(got - want) <= atol + rtol * np.abs(want)):
        raise NotYet(name, f"`{name}` is not right yet.", hint)
