"""The install files agree with each other."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _requirements():
    return [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_binder_environment_matches_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "torch==2.13.0+cpu" in pip
    assert [p for p in pip if not p.startswith(("-", "torch=="))] == _requirements()


def test_torch_is_pinned_and_installed_first():
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.index("pip install -q --no-compile torch==2.13.0") < \
        makefile.index("pip install -q --no-compile -r requirements.txt")
    assert not any(r.startswith("torch") for r in _requirements())
    assert "jupyter-book==1.0.4.post1" in _requirements()


def test_make_test_lints_first():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\ntest: setup"):]
    assert recipe.index("ruff check .") < recipe.index("pytest")
    assert "[tool.ruff.lint]" in (ROOT / "pyproject.toml").read_text()


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_states_what_a_reader_needs():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    readme = (ROOT / "README.md").read_text()
    assert project["requires-python"] == ">=3.11" and "Python ≥ 3.11" in readme
    assert not any(d.split("=")[0].split(">")[0].strip() == "torch" for d in project["dependencies"])
    assert "make test-colab" in readme and "\ntest-colab:" in (ROOT / "Makefile").read_text()
    assert "make sync URL=" in readme and "GENVIZ_DOWNLOAD=1" in readme
    assert "TIME_" not in readme, "fill in the measured times"


def test_a_pip_install_ships_every_subpackage():
    # Colab installs genviz non-editably: a subpackage the build leaves out is a ModuleNotFoundError there.
    import tomllib

    from setuptools import find_packages

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_packages(str(ROOT), include=find["include"]))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "genviz_lib").rglob("__init__.py")}
    assert "genviz_lib.experiments" in on_disk and shipped == on_disk
