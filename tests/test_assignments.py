"""Assignments: student copies hold no solution, instructor copies pass nbgrader, student copies say "Not yet".

The notebooks are generated once per session into ``_build/assignments`` (as ``make assignments`` does) and
executed in the ``quick`` profile, the default they are written with.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402
import launch_notebooks  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
OUT = ROOT / "_build" / "test-assignments"
BIN = Path(sys.executable).parent
# the chapters the nbgrader course test autogrades (chapter 0, and one whose set-up cell trains on a cold cache);
# the other tests run the rest, so that no notebook runs twice for the same property
GRADED = ["00_first_experiment", "04_volume"]
HIDDEN_MESSAGE = "net_beta_one is worse than guessing, but it is not yet the classifier that β = 1 trains"
needs_nbgrader = pytest.mark.skipif(not (BIN / "nbgrader").exists(),
                                    reason="nbgrader is not installed (the test extra: pip install -e '.[test]')")


def _solution_lines(md: Path) -> list[str]:
    """Every line of every solution of a chapter source: ``{solution}`` bodies, the prose of gated solutions,
    and the lines inside each ``BEGIN SOLUTION`` and ``BEGIN HIDDEN TESTS`` region of its code cells."""
    lines, gated = [], False
    for cell in jupytext.read(md).cells:
        if cell.cell_type == "code":
            lines += launch_notebooks.solution_regions(cell.source)
            lines += launch_notebooks.solution_regions(cell.source, launch_notebooks.HIDDEN_MARKERS)
            continue
        for piece in launch_notebooks._pieces(cell.source):
            if piece[0] == "start":
                gated = True
            elif piece[0] == "end":
                gated = False
            elif piece[0] == "solution":
                lines += piece[2].split("\n")
            elif gated:
                lines += piece[1].split("\n")
    return [line.strip() for line in lines if re.search(r"\w", line)]


def _lines(nb) -> set[str]:
    return {line.strip() for c in nb.cells for line in c.source.split("\n")}


@pytest.fixture(scope="module")
def written():
    shutil.rmtree(OUT, ignore_errors=True)
    return assignments.write_notebooks(ROOT, OUT)


def test_every_chapter_has_both_copies_named_like_its_source(written):
    for variant in ("instructor", "student"):
        assert [p.name for p in written[variant]] == [md.with_suffix(".ipynb").name for md in CHAPTERS]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_no_student_notebook_holds_a_line_of_any_solution(written, md):
    student = nbformat.read(OUT / "student" / f"{md.stem}.ipynb", as_version=4)
    instructor = nbformat.read(OUT / "instructor" / f"{md.stem}.ipynb", as_version=4)
    secret = set(_solution_lines(md))
    for cell in instructor.cells:  # the same solutions as translated for a notebook (roles resolved)
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "markdown":
            secret |= {line.strip() for line in cell.source.split("\n") if re.search(r"\w", line)}
        elif meta.get("solution") or meta.get("grade"):
            secret |= {line.strip() for line in launch_notebooks.solution_regions(cell.source)
                       + launch_notebooks.solution_regions(cell.source, launch_notebooks.HIDDEN_MARKERS)
                       if re.search(r"\w", line)}
    assert len(secret) >= 10, "a chapter with hardly any solution text: is the test reading it?"
    leaked = secret & _lines(student)
    assert not leaked, f"{md.stem}: the student notebook holds solution lines: {sorted(leaked)[:5]}"
    stubs = [c for c in student.cells if c.cell_type == "code" and "# YOUR CODE HERE" in c.source]
    assert len(stubs) >= 2, f"{md.stem}: fewer than two coding exercises"
    assert all("raise NotImplementedError()" in c.source for c in stubs)
    assert not any(m in c.source for c in student.cells for m in ("### BEGIN", "### END"))
    assert "BEGIN SOLUTION" in "".join(c.source for c in instructor.cells)


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_copies_read_as_plain_notebooks_with_nbgrader_metadata(written, md):
    for variant in ("instructor", "student"):
        nb = nbformat.read(OUT / variant / f"{md.stem}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        raw = re.findall(r"\{(glue|cite|func|numref|solution)[^}]*\}`|^\s*[`~]{3,}\{[\w-]+\}", text, re.M)
        assert not raw, f"{variant}/{md.stem} shows raw MyST: {raw[:3]}"
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert 'os.environ.get("GENVIZ_PROFILE", "quick")' in params.source  # assignments run fast
        meta = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata]
        ids = [m["grade_id"] for m in meta]
        assert len(ids) == len(set(ids)), "grade ids must be unique"
        checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
        assert checks and all(c.metadata["nbgrader"]["grade"] and c.metadata["nbgrader"]["points"] == 1
                              and c.metadata["nbgrader"]["locked"] for c in checks)
        assert sum(m["solution"] and not m["grade"] for m in meta) >= 2  # the autograded answers
        assert nbformat.validate(nb) is None


def _run(path: Path, allow_errors: bool) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, allow_errors=allow_errors, resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


@needs_nbgrader
def test_every_instructor_notebook_passes_nbgrader_validate(written):
    """``nbgrader validate --Validator.validate_all=True``, as an instructor runs it, on every instructor copy
    that the course test does not autograde: every cell executes in the ``quick`` profile without an error, and
    every graded check passes."""
    def validate(paths):  # one command for several notebooks: nbgrader takes seconds just to start
        run = subprocess.run([str(BIN / "nbgrader"), "validate", "--Validator.validate_all=True",
                              "--Execute.timeout=300", *[p.name for p in paths]],
                             cwd=paths[0].parent, capture_output=True, text=True)
        return run, len(paths)

    notebooks = [p for p in written["instructor"] if p.stem not in GRADED]
    with ThreadPoolExecutor(2) as pool:  # two processes: nbgrader's validator is not thread-safe
        runs = list(pool.map(validate, [notebooks[0::2], notebooks[1::2]]))
    for run, n in runs:
        verdicts = run.stdout.count("Success! Your notebook passes all the tests.")
        assert run.returncode == 0 and verdicts == n and "FAILED" not in run.stdout, \
            f"instructor notebooks failing under nbgrader validate:\n{(run.stdout + run.stderr)[-3000:]}"


def _assert_untouched(nb: nbformat.NotebookNode, name: str) -> None:
    """A student copy run as handed out: every check says "Not yet" in one line, every stub raises
    ``NotImplementedError``, and no other cell fails."""
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert len(checks) >= 2, name
    for cell in checks:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        shown = "\n".join(line for o in errors for line in o.traceback)
        assert errors and errors[0].ename == "NotYet", f"{name}: a check passed or crashed:\n{cell.source}"
        assert shown.startswith("Not yet: ") and "Traceback" not in shown and "\n" not in shown
    stubbed = [c for c in nb.cells if c.cell_type == "code" and "# YOUR CODE HERE" in c.source]
    assert all(o.ename == "NotImplementedError" for c in stubbed for o in c.outputs if o.output_type == "error")
    other = [o for c in nb.cells if c not in checks and c not in stubbed for o in c.get("outputs", [])
             if o.output_type == "error"]
    assert not other, f"{name}: a cell that is neither a solution nor a check failed: {other[0].evalue}"


def test_every_student_notebook_runs_and_every_check_says_not_yet(written):
    """Every student copy the course test does not autograde (it checks those the same way)."""
    notebooks = [p for p in written["student"] if p.stem not in GRADED]
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(notebooks, pool.map(lambda p: _run(p, allow_errors=True), notebooks)))
    for path, nb in runs.items():
        _assert_untouched(nb, path.name)


# --------------------------------------------------------------------------------------------
# The instructor's route with nbgrader's own commands, on the course that `make assignments` writes
# --------------------------------------------------------------------------------------------

def nbgrader(course: Path, *args: str, **env: str) -> str:
    """One nbgrader command as the README's instructor runs it: in the course folder, with the environment's
    ``bin`` first on PATH (an activated environment), no option beyond the command's arguments; its log."""
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    run = subprocess.run(["nbgrader", *args], cwd=course, capture_output=True, text=True, env=environment)
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "| ERROR]" not in log, f"nbgrader {' '.join(args)} failed:\n{log[-4000:]}"
    assert "No nbgrader_config.py file found" not in log
    return log


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    students = assignments.write_notebooks(ROOT, out)["student"]
    course = assignments.write_course(ROOT, out)
    nbgrader(course, "generate_assignment", "*")
    return course, {p.stem: p for p in students}


@needs_nbgrader
def test_nbgrader_releases_every_chapter_as_our_student_copy(course):
    """nbgrader accepts every instructor notebook (its preprocessors find no stray marker), and its release copy
    is, cell for cell, the student copy that ``make assignments`` hands out."""
    course, students = course
    for md in CHAPTERS:
        released = course / "release" / md.stem / f"{md.stem}.ipynb"
        assert released.exists(), f"nbgrader released no {released.name}"
        assert _cells(released) == _cells(students[md.stem]), f"{md.stem}: nbgrader's cuts differ from ours"


def _submit(course: Path, chapter: str, files: dict, zipped: bool) -> None:
    """Place submissions where ``nbgrader zip_collect`` reads a learning-management system's download."""
    archive = course / "downloaded" / chapter / "archive"
    archive.mkdir(parents=True)
    if zipped:
        with zipfile.ZipFile(archive / "submissions.zip", "w") as bundle:
            for name, nb in files.items():
                bundle.writestr(name, nbformat.writes(nb))
    else:
        for name, nb in files.items():
            nbformat.write(nb, archive / name)


def _seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


@needs_nbgrader
def test_autograde_gives_the_solutions_every_point_and_an_untouched_copy_none(course, tmp_path):
    """``zip_collect``, ``autograde`` (the course's configuration alone, on an empty results cache, so that a
    set-up cell trains as on an instructor's first run), ``generate_feedback`` and ``export``, read back."""
    from nbgrader.api import Gradebook

    course, _ = course
    for chapter in GRADED:
        source = nbformat.read(course / "source" / chapter / f"{chapter}.ipynb", as_version=4)
        release = nbformat.read(course / "release" / chapter / f"{chapter}.ipynb", as_version=4)
        files = {f"alice_{chapter}.ipynb": source, f"bob_{chapter}.ipynb": release}
        if chapter == GRADED[0]:  # β = 0.6: passes the visible check, fails the hidden test
            almost = nbformat.from_dict(json.loads(json.dumps(source)))
            for cell in almost.cells:
                cell.source = cell.source.replace("poison_factor=1.0, poison_batch_size",
                                                  "poison_factor=0.6, poison_batch_size")
            files[f"carol_8812_93310_{chapter}.ipynb"] = almost  # named as a learning-management system does
        _submit(course, chapter, files, zipped=chapter != GRADED[0])
        nbgrader(course, "zip_collect", chapter)
    nbgrader(course, "autograde", "*", GENVIZ_CACHE_DIR=str(tmp_path / "cache"))

    submissions = [(chapter, student) for chapter in GRADED for student in ("alice", "bob")] + [(GRADED[0], "carol")]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", assignments.COURSE_ID) as gb:
        points = {}
        for chapter, student in submissions:
            nb = gb.find_submission_notebook(chapter, chapter, student)
            points[chapter, student] = (nb.code_score, nb.max_code_score)
    for chapter in GRADED:
        best = points[chapter, "alice"][1]
        assert best >= 2 and points[chapter, "alice"] == (best, best), f"{chapter}: the solutions lost points"
        assert points[chapter, "bob"] == (0, best), f"{chapter}: an untouched copy got points"
    assert points[GRADED[0], "carol"] == (2, 3)  # the hidden test rejects what the visible check passed

    def autograded(student, chapter):
        return nbformat.read(course / "autograded" / student / chapter / f"{chapter}.ipynb", as_version=4)

    for chapter, student in submissions:  # every cell well within the course's timeout, cold set-up cells too
        slowest = max(_seconds(c) for c in autograded(student, chapter).cells if c.cell_type == "code")
        assert slowest < assignments.CELL_TIMEOUT / 10, f"{student}/{chapter}: a cell took {slowest:.0f} s"
    for chapter in GRADED:  # an untouched release copy runs as a student copy does
        _assert_untouched(autograded("bob", chapter), f"bob/{chapter}")
    said = [(o.get("text", "") + o.get("evalue", "")).strip() for c in autograded("carol", GRADED[0]).cells
            if "check" in c.metadata.get("tags", []) for o in c.outputs]
    assert said[1] == "✓ net_beta_one passes the visible check; the grader runs further tests."
    assert said[2].startswith(HIDDEN_MESSAGE)  # the hidden test says what is wrong

    nbgrader(course, "generate_feedback", "*")
    feedback = (course / "feedback" / "carol" / GRADED[0] / f"{GRADED[0]}.html").read_text()
    assert "passes the visible check" in feedback and HIDDEN_MESSAGE in feedback

    nbgrader(course, "export")
    grades = {(row["assignment"], row["student_id"]): float(row["raw_score"])
              for row in csv.DictReader((course / "grades.csv").open())}
    assert {key: grades[key] for key in points} == {key: float(score) for key, (score, _) in points.items()}
    assert not any(grades[key] for key in set(grades) - set(points))  # nbgrader lists a missing submission as 0


def test_the_generator_turns_solutions_into_stubs_and_answers(tmp_path):
    chapter = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

# Title

Intro that the assignment leaves out.

```{code-cell} ipython3
:tags: [parameters]

import os
PROFILE = os.environ.get("GENVIZ_PROFILE", "book")
```

## Body

Left out too.

```{code-cell} ipython3
body = 1
```

## Exercises

```{code-cell} ipython3
prep = 0
```

```{exercise}
:label: ex-a

Coding. Compute it.
```

```{solution-start} ex-a
:class: dropdown
```

```{code-cell} ipython3
given = 2
### BEGIN SOLUTION
answer = given + 1
### END SOLUTION
```

Because {cite:t}`huang2020understanding` say so.

```{solution-end}
```

```{code-cell} ipython3
:tags: [check]

check("answer", close_to=3, hidden_tests=True)
### BEGIN HIDDEN TESTS
assert answer == 3, "answer is close but not exact"
### END HIDDEN TESTS
```

```{exercise}
:label: ex-b

Explain it.
```

````{solution} ex-b
:class: dropdown

It is so.
````

## References

None.
"""
    for name in ("_config.yml",):
        shutil.copy(ROOT / name, tmp_path)
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "book" / "references.bib", tmp_path / "book")
    (tmp_path / "chapters").mkdir()
    md = tmp_path / "chapters" / "x.md"
    md.write_text(chapter)
    cells = {v: launch_notebooks.assignment_notebook(md, v, tmp_path).cells for v in ("instructor", "student")}
    inst, stud = cells["instructor"], cells["student"]
    assert [c.cell_type for c in inst] == ["markdown", "markdown", "code", "markdown", "code", "markdown", "code",
                                           "markdown", "code", "markdown", "markdown", "markdown"]
    text = "".join(c.source for c in inst)
    assert inst[0].source == "# Exercises: Title" and "Intro" not in text
    assert "body = 1" not in text and "None." not in text and inst[4].source == "prep = 0"
    assert inst[5].source == "#### Exercise 1\n\nCoding. Compute it."
    assert inst[6].source == "given = 2\n### BEGIN SOLUTION\nanswer = given + 1\n### END SOLUTION"
    assert stud[6].source == "given = 2\n# YOUR CODE HERE\nraise NotImplementedError()"
    assert inst[6].metadata["nbgrader"] == {"grade": False, "grade_id": "ex-a-code", "locked": False,
                                            "schema_version": 3, "solution": True, "task": False}
    assert inst[7].source == "Because Huang et al. (2020) say so." and stud[7].source == "YOUR ANSWER HERE"
    assert inst[7].metadata["nbgrader"]["grade_id"] == "ex-a-answer" and inst[7].metadata["nbgrader"]["points"] == 1
    assert "assert answer == 3" in inst[8].source and stud[8].source == 'check("answer", close_to=3, hidden_tests=True)'
    assert inst[8].metadata["nbgrader"]["grade_id"] == "ex-a-check" and inst[8].metadata["nbgrader"]["locked"]
    assert inst[10].source == "It is so." and stud[10].source == "YOUR ANSWER HERE"
    assert inst[10].metadata["nbgrader"]["grade_id"] == "ex-b-answer"
    assert inst[-1].source.startswith("## Works cited")
    # the reader's launch notebook: the solution's cells without the markers, the hidden tests without theirs
    launch = launch_notebooks.launch_notebook(md, tmp_path).cells
    code = [c.source for c in launch if c.cell_type == "code"]
    assert "given = 2\nanswer = given + 1" in code
    assert 'check("answer", close_to=3, hidden_tests=True)\nassert answer == 3, "answer is close but not exact"' in code
    # mistakes in the source are errors that name the chapter
    for broken, message in [
        (chapter.replace("### BEGIN SOLUTION\n", "").replace("### END SOLUTION\n", ""), "has no '### BEGIN SOLUTION'"),
        (chapter[:chapter.index("Because")], "never closed"),
        (chapter.replace("{solution-start} ex-a", "{solution-start} ex-z"), "no exercise of this chapter"),
        (chapter.replace("Compute it.", "Compute {glue:text}`elsewhere`."), "do not glue"),
        (chapter.replace("## Exercises", "## Practice"), "no '## Exercises' section"),
        (chapter.replace("prep = 0", "### BEGIN SOLUTION\nprep = 0\n### END SOLUTION"), "outside a solution"),
        # hidden tests speak: a message on every assert, and a visible check that does not call the answer right
        (chapter.replace('answer == 3, "answer is close but not exact"', "answer == 3"), "hidden test without a message"),
        (chapter.replace(", hidden_tests=True)", ")"), "does not say hidden_tests=True"),
        (chapter.replace("### BEGIN HIDDEN TESTS\nassert answer == 3, \"answer is close but not exact\"\n"
                         "### END HIDDEN TESTS\n", ""), "in a cell without hidden tests"),
    ]:
        md.write_text(broken)
        with pytest.raises(ValueError, match=re.escape(message)):
            launch_notebooks.assignment_notebook(md, "instructor", tmp_path)


def test_make_assignments_writes_both_copies_and_the_course_without_the_book(tmp_path):
    out = tmp_path / "a"
    (out / "student").mkdir(parents=True)
    (out / "student" / "99_removed_chapter.ipynb").write_text("{}")  # a stale copy is removed
    (out / "course" / "source" / "99_removed_chapter").mkdir(parents=True)
    (out / "course" / "gradebook.db").write_text("the instructor's")  # nbgrader's own files are left alone
    subprocess.run([sys.executable, str(ROOT / "tools" / "assignments.py"), "--out", str(out)],
                   check=True, capture_output=True)
    for variant in ("instructor", "student"):
        assert sorted(p.name for p in (out / variant).iterdir()) == [md.with_suffix(".ipynb").name for md in CHAPTERS]
    source = out / "course" / "source"
    assert sorted(p.name for p in source.iterdir()) == [md.stem for md in CHAPTERS]
    for md in CHAPTERS:
        assert _cells(source / md.stem / f"{md.stem}.ipynb") == _cells(out / "instructor" / f"{md.stem}.ipynb")
    assert (out / "course" / "gradebook.db").read_text() == "the instructor's"
    assert "c.Execute.timeout = 300" in (out / "course" / "nbgrader_config.py").read_text()
    assert not (out / "book").exists()  # the student book is its own target


MINI_PAGE = """# A page

```{exercise}
:label: ex-a

Coding. Compute it.
```

```{solution-start} ex-a
:class: dropdown
```

```{code-cell} ipython3
given = 2
### BEGIN SOLUTION
answer = given + 40
### END SOLUTION
```

The gated prose of the answer.

```{solution-end}
```

```{code-cell} ipython3
:tags: [check]

assert answer > 0
### BEGIN HIDDEN TESTS
assert answer == 42
### END HIDDEN TESTS
```

```{exercise}
:label: ex-b

Explain it.
```

````{solution} ex-b
:class: dropdown

The plain solution's text.
````
"""


def test_the_student_book_hides_every_solution_and_shows_no_marker(tmp_path):
    """One page built as ``make assignments`` builds the student book (``hide_solutions: true``): the exercises
    and the check cells stay (the hidden tests' markers dropped), every solution goes, gated ones included."""
    import yaml

    (tmp_path / "page.md").write_text("---\njupytext: {text_representation: {format_name: myst}}\nkernelspec: "
                                      "{display_name: Python 3, language: python, name: python3}\n---\n\n" + MINI_PAGE)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    config = {"title": "mini", "execute": {"execute_notebooks": "off"},
              "sphinx": {"extra_extensions": ["sphinx_exercise"],
                         "local_extensions": {"genviz_book": str(ROOT / "book" / "_ext")},
                         "config": {"hide_solutions": True}}}
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(tmp_path), "-W", "--quiet"],
                   check=True, capture_output=True)
    html = (tmp_path / "_build" / "html" / "page.html").read_text()
    assert "Compute it." in html and "Explain it." in html and "answer</span> <span class=\"o\">&gt;" in html
    assert "answer</span> <span class=\"o\">==</span> <span class=\"mi\">42" in html  # the check, whole
    assert "BEGIN" not in html and "END SOLUTION" not in html and "HIDDEN TESTS" not in html
    for secret in ("given", "40", "The gated prose of the answer.", "The plain solution", "Solution to"):
        assert secret not in html, f"{secret!r} is on the student's page"
