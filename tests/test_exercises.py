"""The check cells of the coding exercises: right answers pass, every kind of wrong one gets "Not yet"."""

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from genviz_lib.exercises import NotYet, check


def test_a_right_answer_passes_and_says_so_without_the_reference(capsys):
    space = {"tau": 0.2500001, "v": torch.tensor([1.0, 2.0]), "p": 0.7, "pair": (3.0, 4.0)}
    check("tau", close_to=0.25, rtol=1e-5, namespace=space)
    check("v", close_to=np.array([1.0, 2.0]), namespace=space)
    check("p", within=(0.5, 0.9), namespace=space)
    check("pair", satisfies=lambda xy: xy[0] ** 2 + xy[1] ** 2 == 25, namespace=space)
    out = capsys.readouterr().out.splitlines()
    assert out == ["✓ tau is right (to within 1e-05 relative).", "✓ v is right (to within 1e-06 relative).",
                   "✓ p is right.", "✓ pair is right."]
    assert "0.25" not in " ".join(out)  # the reference is never printed


def test_a_check_followed_by_hidden_tests_never_says_right(capsys):
    check("tau", close_to=0.25, rtol=1e-5, hidden_tests=True, namespace={"tau": 0.25})
    check("p", within=(0.5, 0.9), hidden_tests=True, namespace={"p": 0.7})
    out = capsys.readouterr().out.splitlines()
    assert out == ["✓ tau passes the visible check (to within 1e-05 relative); the grader runs further tests.",
                   "✓ p passes the visible check; the grader runs further tests."]
    with pytest.raises(NotYet, match="not in the range"):  # a wrong answer is still "Not yet"
        check("p", within=(0.5, 0.9), hidden_tests=True, namespace={"p": 0.2})


@pytest.mark.parametrize("value, kwargs, reason", [
    (0.26, {"close_to": 0.25, "rtol": 1e-3}, "`x` is not right yet."),
    (float("nan"), {"close_to": 0.25}, "`x` has entries that are not finite numbers."),
    ("0.25", {"close_to": 0.25}, "`x` should be numeric, not a str."),
    (True, {"close_to": 1.0}, "`x` should be numeric, not a bool."),
    ([1.0, 2.0], {"close_to": 1.5}, "`x` should have one number, not a list of length 2."),
    (1.0, {"close_to": [1.0, 2.0]}, "`x` should have shape (2,), not one number."),
    (torch.ones(3), {"close_to": np.ones(2)}, "`x` should have shape (2,), not an array of shape (3,)."),
    (1.2, {"within": (0.0, 1.0)}, "`x` is not in the range a right answer falls in."),
    (torch.ones(2), {"within": (0.0, 1.0)}, "`x` should be one number, not an array of shape (2,)."),
    ((1, 2), {"satisfies": lambda v: v[0] == 2}, "`x` does not have the property a right answer has."),
    (None, {"satisfies": lambda v: v[0] == 2}, "`x` could not be checked (TypeError: 'NoneType' object is not "
                                               "subscriptable)."),
])
def test_every_wrong_answer_is_not_yet_with_the_hint(value, kwargs, reason):
    with pytest.raises(NotYet) as caught:
        check("x", hint="look again", namespace={"x": value}, **kwargs)
    assert caught.value.reason == reason
    assert str(caught.value) == f"Not yet: {reason} Hint: look again"
    assert caught.value._render_traceback_() == [str(caught.value)]


def test_a_missing_answer_is_not_yet_defined_and_the_caller_namespace_is_read():
    with pytest.raises(NotYet, match="`answer_xyz` is not defined yet"):
        check("answer_xyz", close_to=1.0)
    globals()["answer_module_level"] = 2.0  # a notebook's variables are its globals
    try:
        check("answer_module_level", close_to=2.0)
    finally:
        del globals()["answer_module_level"]


def test_a_check_needs_exactly_one_criterion_and_sane_tolerances():
    with pytest.raises(TypeError, match="exactly one"):
        check("x", namespace={"x": 1})
    with pytest.raises(TypeError, match="exactly one"):
        check("x", close_to=1, within=(0, 2), namespace={"x": 1})
    with pytest.raises(ValueError, match="non-negative"):
        check("x", close_to=1, rtol=-1, namespace={"x": 1})
    with pytest.raises(TypeError, match="reference for 'x' is not numeric"):
        check("x", close_to="one", namespace={"x": 1})


def test_in_a_notebook_not_yet_is_one_readable_line_and_right_prints_a_tick():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from genviz_lib.exercises import check"),
        nbformat.v4.new_code_cell('check("answer", close_to=2.0, hint="add one and one")'),
        nbformat.v4.new_code_cell("answer = 3.0\ncheck('answer', close_to=2.0)"),
        nbformat.v4.new_code_cell("answer = 2.0\ncheck('answer', close_to=2.0)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=60, allow_errors=True).execute()
    missing, wrong, right = (c.outputs for c in nb.cells[1:])
    assert [o.output_type for o in missing] == ["error"] and missing[0].ename == "NotYet"
    assert missing[0].traceback == ["Not yet: `answer` is not defined yet: write your code in the cell above, "
                                    "run it, then run this cell. Hint: add one and one"]
    assert wrong[0].traceback == ["Not yet: `answer` is not right yet."]
    assert right[0].output_type == "stream" and right[0].text == "✓ answer is right (to within 1e-06 relative).\n"
