"""The progress line: silent in tests, one summary line per long piece of work in the book build."""

import pytest
import torch

from genviz_lib import config, progress, train


def test_silent_outside_a_kernel_and_a_terminal(capsys):
    with progress.Progress(10, "training") as bar:
        bar.update(10, loss=0.5)
    assert capsys.readouterr().out == ""


def test_the_book_build_keeps_one_line_for_long_work_and_none_for_short(monkeypatch, capsys):
    monkeypatch.setenv("GENVIZ_BOOK_BUILD", "1")
    clock = iter([100.0, 100.0, 131.0, 131.0, 131.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = progress.Progress(3000, "swiss roll")
    bar.update(2500, **{"train acc": "100.0%"})
    bar.close(total=2500)
    bar.close()  # closing twice still leaves one line
    assert capsys.readouterr().out == "swiss roll: 2,500 steps in 31 s (train acc 100.0%)\n"
    monkeypatch.setattr(progress.time, "perf_counter", lambda: 5.0)
    with progress.Progress(10, "short") as quick:
        quick.update(10)
    assert capsys.readouterr().out == ""  # under BOOK_MIN_SECONDS: nothing in the page


def test_an_ensemble_reports_ranges_and_stops_not_a_mean():
    info = train._progress_info(torch.tensor([1.0, 0.9]), torch.tensor([0.99, 0.30]), torch.tensor([False, True]))
    assert info == {"nets": 2, "train acc": "90.0%–100.0%", "test acc": "30.0%–99.0%", "stopped": 1}
    one = train._progress_info(torch.tensor([0.5]), None, torch.tensor([True]))
    assert one == {"train acc": "50.0%"}  # no test set: no "test acc nan"


@pytest.mark.parametrize("value", ["1", "yes", "ON"])
def test_book_build_flag_spellings(monkeypatch, value):
    monkeypatch.setenv("GENVIZ_BOOK_BUILD", value)
    assert config.in_book_build()
