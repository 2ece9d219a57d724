import sys
import types

import pytest

from genviz_lib import notebook


def test_glue_prints_the_value_where_there_is_no_book_build(capsys):
    notebook.glue("good_test", "82.2%", display=False)
    notebook.glue("n_params", 3614)
    assert capsys.readouterr().out == "⟨good_test⟩ = 82.2%\n⟨n_params⟩ = 3614\n"


def test_glue_hands_values_to_myst_nb_in_the_book_build(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    monkeypatch.setenv("GENVIZ_BOOK_BUILD", "1")
    notebook.glue("good_test", "82.2%", display=False)
    assert calls == [("good_test", "82.2%", False)] and capsys.readouterr().out == ""


def test_glue_shows_other_values_under_their_name(monkeypatch, capsys):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda value: shown.append(value))
    notebook.glue("table", {"a": 1})
    assert capsys.readouterr().out == "⟨table⟩:\n" and shown == [{"a": 1}]


def test_glue_names_must_be_usable_in_the_prose():
    with pytest.raises(ValueError, match="glue name 'a b'"):
        notebook.glue("a b", 1)


def test_the_book_build_extension_marks_the_build(monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.delenv("GENVIZ_BOOK_BUILD", raising=False)
    path = Path(__file__).resolve().parent.parent / "book" / "_ext" / "genviz_book.py"
    spec = importlib.util.spec_from_file_location("genviz_book", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    connected = []
    configured = []
    app = types.SimpleNamespace(connect=lambda event, handler, priority=500: connected.append(event),
                                add_config_value=lambda name, default, rebuild: configured.append((name, default)))
    assert not notebook.in_book_build()
    module.setup(app)
    assert notebook.in_book_build() and connected == ["env-get-outdated", "source-read", "build-finished",
                                                      "build-finished", "config-inited", "doctree-read",
                                                      "env-get-updated"]
    assert configured == [("genviz_hide_solutions", False)]


def test_setup_checks_the_profile_and_the_data_before_anything_else(monkeypatch, tmp_path, capsys):
    import torch

    from genviz_lib import data

    monkeypatch.setenv("GENVIZ_CACHE_DIR", str(tmp_path / "cache"))
    asked = []
    monkeypatch.setattr(data, "require", lambda *names, download=None: asked.append(names) or [])
    threads = torch.get_num_threads()
    try:
        profile, cache = notebook.setup("quick", needs=["fashion-mnist"], full_needs=["svhn"])
        assert profile.name == "quick" and cache.root == tmp_path / "cache" and cache.enabled
        assert asked == [("fashion-mnist",)] and torch.get_num_threads() == 2
        profile, _ = notebook.setup("full", needs=["fashion-mnist"], full_needs=["svhn"])
        assert asked[-1] == ("fashion-mnist", "svhn")  # the full profile's data sets too
        assert capsys.readouterr().out == "profile quick\nprofile full\n"
        monkeypatch.setenv("GENVIZ_NO_CACHE", "yes")
        assert not notebook.setup("book")[1].enabled
        assert "results cache off" in capsys.readouterr().out
        with pytest.raises(ValueError, match="unknown profile 'fast'"):
            notebook.setup("fast", needs=["fashion-mnist"])
        assert len(asked) == 3  # a wrong profile stops before the data check
    finally:
        torch.set_num_threads(threads)


def test_the_book_publishes_its_profiles_results_and_flags_a_missing_one(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "book" / "_ext" / "genviz_book.py"
    spec = importlib.util.spec_from_file_location("genviz_book", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = tmp_path / "data" / "results"
    results.mkdir(parents=True)
    for name in ("scoreboard-book.csv", "scoreboard-book-tau.csv", "bound-book.json", "scoreboard-quick.csv",
                 "scoreboard-full.csv", "scoreboard-full.json"):  # full: a committed sweep's export
        (results / name).write_text(name)
    out = tmp_path / "html"
    (out / "chapters").mkdir(parents=True)
    (out / "data" / "results").mkdir(parents=True)
    (out / "data" / "results" / "stale-book.csv").write_text("from an earlier build")
    (out / "chapters" / "06.html").write_text('<a href="../data/results/scoreboard-book.csv">a</a> '
                                              '<a href="../data/results/missing-book.json">b</a>')
    monkeypatch.setenv("GENVIZ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GENVIZ_PROFILE", "book")
    warnings = []
    monkeypatch.setattr("sphinx.util.logging.getLogger",
                        lambda name: types.SimpleNamespace(warning=warnings.append))
    app = types.SimpleNamespace(outdir=str(out), builder=types.SimpleNamespace(format="html"))
    module.publish_results(app, None)
    published = sorted(p.name for p in (out / "data" / "results").iterdir())
    assert published == ["bound-book.json", "scoreboard-book-tau.csv", "scoreboard-book.csv", "scoreboard-full.csv",
                         "scoreboard-full.json"]
    assert len(warnings) == 1 and "missing-book.json" in warnings[0]
