"""The launch notebooks: what Colab, Binder and a notebook download open, generated from the chapters.

A chapter's one source is its MyST-markdown file, ``chapters/X.md``. Jupyter Book reads its roles and
directives; Colab and JupyterLab show them raw. This module writes ``chapters/X.ipynb`` (the file the
book's launch buttons open) from the source with its markdown turned into plain Jupyter markdown:

- ``{glue:text}`name``` → ``⟨name⟩``; the chapter's glue cell prints ``⟨name⟩ = value`` there;
- ``{cite:t}`` / ``{cite:p}`` → "Huang et al. (2020)" / "(Huang et al., 2020)", with the works cited
  listed at the end of the notebook;
- ``{func}`` and the other Python roles → a link to the published API page;
- ``{numref}`` → "Figure k", and each figure's caption (from its cell's metadata) under the figure;
- ``{admonition}`` → a quotation block; ``{exercise}`` → "Exercise k"; ``{solution}`` → a folded
  ``<details>`` block; ``(label)=`` targets are dropped.

A coding exercise's solution is a gated ``{solution-start}`` … ``{solution-end}`` block (sphinx-exercise), whose
code cells mark the solution with nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION``; the cell tagged
``check`` after it tests the answer (``genviz_lib.exercises.check``), with an optional ``### BEGIN HIDDEN TESTS``
region. The launch notebook shows those cells without the markers.

The same translation writes the assignments (:func:`assignment_notebook`, ``make assignments``): the chapter's
set-up cells and its "Exercises" section, in the ``quick`` profile, as an *instructor* copy (solutions,
checks and nbgrader's cell metadata: solution cells, graded check cells, manually graded written answers)
and a *student* copy generated from it (solution regions replaced by ``# YOUR CODE HERE`` /
``raise NotImplementedError()``, written answers by "YOUR ANSWER HERE", hidden tests removed) — the
solutions are written once, in the chapter, and no exercise notebook is edited by hand.

An unknown role or directive is an error, so a new construct in a chapter cannot slip through raw.
Run by ``make sync`` (``tools/sync_chapters.py``); ``tests/test_launch_notebooks.py`` checks the
committed notebooks against a fresh generation.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "`⟨{}⟩`"  # genviz_lib.notebook.placeholder in code font, so it stands out (tested to agree)

INLINE = re.compile(r"\{(?P<role>[a-z][\w:-]*)\}`(?P<body>[^`]*)`|(?P<ticks>`+).+?(?P=ticks)")
PAREN_CITE = re.compile(r"\((?P<pre>[^()]*?)\{cite:[tp]\}`(?P<keys>[^`]+)`(?P<post>[^()`]*)\)")
NOTE_CITE = re.compile(r"\{cite:t\}`(?P<keys>[^`,]+)` \((?P<note>[^()`]+)\)")
HEADING = re.compile(r"^#{1,6} ")
PLAIN_FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})(?![`~{])")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<arg>.*)$")
TARGET = re.compile(r"^\s*\(([\w-]+)\)=\s*$")
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]  # nbgrader's stubs, so its tools agree
ANSWER_STUB = "YOUR ANSWER HERE"
VARIANTS = ("launch", "instructor", "student")
PROFILE_DEFAULT = 'os.environ.get("GENVIZ_PROFILE", "book")'
PY_ROLES = {"func", "class", "meth", "mod", "attr", "obj", "data", "exc"}
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso"}


# --------------------------------------------------------------------------------------------
# Configuration: the repository URL is the one setting; the published book's URL follows from it
# --------------------------------------------------------------------------------------------

def book_config(root: Path = ROOT) -> dict:
    return yaml.safe_load((root / "_config.yml").read_text())


def repository_url(config: dict) -> str:
    return config["repository"]["url"].rstrip("/")


def pages_url(config: dict) -> str:
    """Where the HTML book is published: ``html.baseurl`` if set, else GitHub Pages of the repository."""
    base = (config.get("html") or {}).get("baseurl")
    if base:
        return base.rstrip("/") + "/"
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(\.git)?", repository_url(config))
    if not m:
        raise ValueError(f"repository.url {repository_url(config)!r} is not on GitHub: set html.baseurl in "
                         "_config.yml to where the book is published")
    return f"https://{m.group(1).lower()}.github.io/{m.group(2)}/"


# --------------------------------------------------------------------------------------------
# Citations
# --------------------------------------------------------------------------------------------

class Bibliography:
    """Author-year labels and a formatted reference list from ``book/references.bib`` (pybtex)."""

    def __init__(self, path: Path):
        from pybtex.database import parse_file
        from pybtex.plugin import find_plugin

        self.entries = parse_file(str(path)).entries
        self._style = find_plugin("pybtex.style.formatting", "plain")()
        self._backend = find_plugin("pybtex.backends", "markdown")()
        self._plain = find_plugin("pybtex.backends", "text")()  # found once: each lookup scans every package
        labels = {key: self._label(entry, self._plain) for key, entry in self.entries.items()}
        # two works with the same authors and year get 2016a, 2016b, in the order of the file
        seen: dict[tuple, list[str]] = {}
        for key, label in labels.items():
            seen.setdefault(label, []).append(key)
        self.labels = {}
        for (names, year), keys in seen.items():
            for i, key in enumerate(keys):
                self.labels[key] = (names, year + ("abcdefghij"[i] if len(keys) > 1 else ""))

    @staticmethod
    def _label(entry, plain) -> tuple[str, str]:
        from pybtex.richtext import Text

        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render(plain) for p in people]
        names = (last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2
                 else f"{last[0]} et al." if last else "Anonymous")
        return names, entry.fields.get("year", "n.d.")

    def cite(self, keys: list[str], style: str = "text", note: str = "") -> str:
        """``text``: Huang et al. (2020); ``paren``: (Huang et al., 2020); ``bare``: Huang et al., 2020.
        ``note`` (a locator such as "§2") goes inside the year's parentheses: Huang et al. (2020, §2)."""
        unknown = [k for k in keys if k not in self.labels]
        if unknown:
            raise KeyError(f"cited but not in references.bib: {unknown}")
        labels = [self.labels[k] for k in keys]
        if style == "text":
            extra = f", {note}" if note else ""
            return "; ".join(f"{n} ({y}{extra})" for n, y in labels)
        bare = "; ".join(f"{n}, {y}" for n, y in labels) + (f", {note}" if note else "")
        return f"({bare})" if style == "paren" else bare

    def reference_list(self, keys) -> str:
        keys = sorted(set(keys), key=lambda k: (self.labels[k][0].lower(), self.labels[k][1]))
        formatted = {e.key: e.text.render(self._backend)
                     for e in self._style.format_entries([self.entries[k] for k in keys])}
        lines = []
        for k in keys:
            names, year = self.labels[k]
            text = " ".join(formatted[k].split("\n"))
            lines.append(f"- **{names} ({year})**. {text}")
        return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def _cached_bibliography(path: Path, mtime_ns: int) -> Bibliography:
    return Bibliography(path)


def _bibliography(path: Path) -> Bibliography:
    """The parsed bibliography, read again only when the file changed (every notebook of a run needs it)."""
    return _cached_bibliography(path, path.stat().st_mtime_ns)


# --------------------------------------------------------------------------------------------
# One chapter
# --------------------------------------------------------------------------------------------

@dataclass
class _Chapter:
    """What the translation of one chapter needs to know and collects on the way."""

    name: str
    bib: Bibliography
    api_url: str
    figures: dict[str, int] = field(default_factory=dict)
    exercises: dict[str, int] = field(default_factory=dict)
    cited: list[str] = field(default_factory=list)
    exercises_seen: int = 0
    glue_allowed: set[str] | None = None  # an assignment's text may name only values its own cells glue
    figure_suffix: str = ""  # an assignment points at the chapter's figures: "Figure 3 of the chapter"

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.name}: {message} (teach tools/launch_notebooks.py, or write it another way)")

    # ---- roles ---------------------------------------------------------------------------
    def role(self, m: re.Match) -> str:
        role, body = m.group("role"), m.group("body").strip()
        role = role[3:] if role.startswith("py:") else role
        text, label = _text_and_target(body)
        if role in ("glue", "glue:text", "glue:"):
            name = body.split(":")[0]
            if self.glue_allowed is not None and name not in self.glue_allowed:
                raise self.error(f"the exercises name the value {name!r}, which their own cells do not glue: an "
                                 "assignment notebook holds only the exercises, so it could not show it")
            return PLACEHOLDER.format(name)
        if role in ("cite", "cite:p", "cite:t", "cite:ps", "cite:ts"):
            return self._cite(body, "paren" if role in ("cite", "cite:p", "cite:ps") else "text")
        if role in PY_ROLES:
            target = label.lstrip("~.")
            shown = text if text is not None else (target.rsplit(".", 1)[-1] if label.startswith("~") else target)
            if role in ("func", "meth"):
                shown += "()" if not shown.endswith(")") else ""
            return f"[`{shown}`]({self.api_url}#{target})"
        if role in ("numref", "ref"):
            if label in self.figures:
                shown = text.replace("%s", str(self.figures[label])) if text else f"Figure {self.figures[label]}"
                return shown + self.figure_suffix
            if label in self.exercises:
                return text or f"Exercise {self.exercises[label]}"
            if text:
                return text
            raise self.error(f"{{{role}}}`{body}` points at a label the notebook does not have")
        if role == "math":
            return f"${body}$"
        if role in ("doc", "download", "term", "abbr", "sub-ref"):
            return text or body
        raise self.error(f"unknown role {{{role}}}")

    def inline(self, line: str) -> str:
        # A citation already inside parentheses, "({cite:t}`k`)", or followed by a locator, "{cite:t}`k` (§2)",
        # would read "(Zhang et al. (2017))" or "Huang et al. (2020) (§2)": write "(Zhang et al., 2017)" and
        # "Huang et al. (2020, §2)" instead.
        line = PAREN_CITE.sub(lambda m: f"({m['pre']}{self._cite(m['keys'], 'bare')}{m['post']})", line)
        line = NOTE_CITE.sub(lambda m: self._cite(m["keys"], "text", m["note"]), line)
        # then left to right, so that a role's own backticks are never taken for a code span, and a role
        # written inside a code span stays literal
        return INLINE.sub(lambda m: self.role(m) if m.group("role") else m.group(0), line)

    def _cite(self, body: str, style: str, note: str = "") -> str:
        keys = [k.strip() for k in body.split(",") if k.strip()]
        self.cited.extend(keys)
        return self.bib.cite(keys, style, note)

    # ---- directives ----------------------------------------------------------------------
    def markdown(self, text: str) -> str:
        lines, out, i, prose = text.split("\n"), [], 0, []

        def flush():  # prose is translated a block at a time: a citation's locator may wrap onto the next line
            if prose:
                out.append(self.inline("\n".join(prose)))
                prose.clear()

        while i < len(lines):
            line = lines[i]
            if TARGET.match(line):
                i += 1
                continue
            plain = PLAIN_FENCE.match(line)
            if plain:  # a code block: copied as it is
                flush()
                j = _closing(lines, i, plain.group("fence"))
                j = len(lines) - 1 if j is None else j  # an unclosed code block runs to the end, as in Jupyter
                out.extend(lines[i:j + 1])
                i = j + 1
                continue
            m = FENCE.match(line)
            if not m:
                prose.append(line)
                i += 1
                continue
            flush()
            j = _closing(lines, i, m.group("fence"))
            if j is None:
                raise self.error(f"directive {{{m.group('name')}}} opened and never closed")
            options, body = _options(lines[i + 1:j])
            out.append(self.directive(m.group("name"), m.group("arg").strip(), options, self.markdown(body)))
            i = j + 1
        flush()
        return "\n".join(out)

    def directive(self, name: str, arg: str, options: dict, body: str) -> str:
        if name == "admonition" or name in ADMONITIONS:
            title = self.inline(arg) if name == "admonition" else (arg and self.inline(arg)) or name.capitalize()
            return _quote(f"**{title}**\n\n{body}")
        if name == "exercise":
            self.exercises_seen += 1  # the same order as the numbering pass of launch_notebook()
            number = self.exercises_seen
            title = f" ({self.inline(arg)})" if arg else ""
            return f"#### Exercise {number}{title}\n\n{body}"
        if name == "solution":
            if arg not in self.exercises:
                raise self.error(f"a solution for {arg!r}, which is no exercise of this chapter")
            return (f"<details>\n<summary><b>Solution to Exercise {self.exercises[arg]}</b></summary>\n\n"
                    f"{body}\n\n</details>")
        if name == "math":
            return f"$$\n{body}\n$$"
        raise self.error(f"unknown directive {{{name}}}")


def _text_and_target(body: str) -> tuple[str | None, str]:
    """``text <target>`` → (text, target); ``target`` → (None, target)."""
    m = re.fullmatch(r"(.*?)\s*<([^<>]+)>", body, flags=re.S)
    return (m.group(1), m.group(2)) if m and m.group(1) else (None, body)


def _options(lines: list[str]) -> tuple[dict, str]:
    """A directive's ``:key: value`` lines (or a ``---`` YAML block) and the rest, its body."""
    if lines and lines[0].strip() == "---":
        end = next(k for k in range(1, len(lines)) if lines[k].strip() == "---")
        return yaml.safe_load("\n".join(lines[1:end])) or {}, "\n".join(lines[end + 1:]).strip("\n")
    options, k = {}, 0
    while k < len(lines) and re.match(r"^\s*:[\w-]+:", lines[k]):
        key, _, value = lines[k].strip()[1:].partition(":")
        options[key] = value.strip()
        k += 1
    return options, "\n".join(lines[k:]).strip("\n")


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened by ``fence`` (the same character, at least as many, alone)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def _closing(lines: list[str], start: int, fence: str) -> int | None:
    """The index of the line that closes the block opened at ``lines[start]``, or None."""
    return next((k for k in range(start + 1, len(lines)) if _closes(lines[k], fence)), None)


def _split_at_headings(text: str) -> list[str]:
    """One markdown cell per section: Jupyter's outline and section folding work cell by cell."""
    parts, current, fence = [], [], None
    for line in text.split("\n"):
        m = PLAIN_FENCE.match(line)
        if m and fence is None:
            fence = m.group("fence")
        elif fence is not None and _closes(line, fence):
            fence = None
        elif fence is None and HEADING.match(line) and any(part.strip() for part in current):
            parts.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    parts.append("\n".join(current).strip("\n"))
    return [p for p in parts if p.strip()]


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def _figure(cell) -> dict | None:
    return ((cell.metadata.get("mystnb") or {}).get("figure")) if cell.cell_type == "code" else None


def _cell_id(index: int, cell) -> str:
    # stable ids, so that regenerating an unchanged chapter changes nothing in git
    return hashlib.sha1(f"{index}\0{cell.cell_type}\0{cell.source}".encode()).hexdigest()[:8]


# --------------------------------------------------------------------------------------------
# Exercises and solutions: the pieces of a markdown cell, and the sections an assignment keeps
# --------------------------------------------------------------------------------------------

def _pieces(text: str) -> list[tuple]:
    """A markdown cell cut at its top-level solutions: ``("text", s)``, ``("solution", label, body)`` for a
    ``{solution}`` block, ``("start", label)`` and ``("end",)`` for the fences of a gated solution."""
    lines, pieces, current, i = text.split("\n"), [], [], 0

    def flush():
        if "\n".join(current).strip():
            pieces.append(("text", "\n".join(current).strip("\n")))
        current.clear()

    while i < len(lines):
        m, plain = FENCE.match(lines[i]), PLAIN_FENCE.match(lines[i])
        if not (m or plain):
            current.append(lines[i])
            i += 1
            continue
        j = _closing(lines, i, (m or plain).group("fence"))
        j = len(lines) - 1 if j is None and plain else j
        if j is None:
            raise ValueError(f"directive {{{m.group('name')}}} opened and never closed")
        name = m.group("name") if m else None
        if name in ("solution", "solution-start", "solution-end"):
            flush()
            label = m.group("arg").strip()
            if name == "solution":
                pieces.append(("solution", label, _options(lines[i + 1:j])[1]))
            else:
                pieces.append(("start", label) if name == "solution-start" else ("end",))
        else:
            current.extend(lines[i:j + 1])
        i = j + 1
    flush()
    return pieces


def _exercise_labels(text: str) -> list[str]:
    lines = text.split("\n")
    return [_options(lines[k + 1:])[0].get("label", "") for k, line in enumerate(lines)
            if (m := FENCE.match(line)) and m.group("name") == "exercise"]


def _regions(source: str, markers: tuple[str, str]):
    """Each line of ``source`` with whether it lies inside a ``markers`` region (``None`` for a marker line:
    ``markers[0]`` opening, ``markers[1]`` closing); unbalanced markers are an error."""
    inside = False
    for line in source.split("\n"):
        if line.strip() == markers[0]:
            if inside:
                raise ValueError(f"a {markers[0]!r} region inside another one:\n{source}")
            inside = True
            yield line, None
        elif line.strip() == markers[1]:
            if not inside:
                raise ValueError(f"{markers[1]!r} without {markers[0]!r}:\n{source}")
            inside = False
            yield line, None
        else:
            yield line, inside
    if inside:
        raise ValueError(f"{markers[0]!r} is never closed:\n{source}")


def _without_regions(source: str, markers: tuple[str, str], stub: list[str] | None = None) -> str:
    """``source`` with each ``markers`` region replaced by ``stub`` (indented like its opening line), or
    with only the marker lines dropped when ``stub`` is None."""
    out = []
    for line, inside in _regions(source, markers):
        if inside is None and stub is not None and line.strip() == markers[0]:
            out.extend(line[:len(line) - len(line.lstrip())] + s for s in stub)
        elif inside is False or (inside and stub is None):
            out.append(line)
    return "\n".join(out)


def solution_regions(source: str, markers: tuple[str, str] = SOLUTION_MARKERS) -> list[str]:
    """The lines inside each ``markers`` region of a cell's source (what a student copy must not hold)."""
    return [line for line, inside in _regions(source, markers) if inside]


def reader_code(source: str) -> str:
    """A cell's code as a reader sees it (web book, launch notebook): without the solution and hidden-test
    marker lines, which are for the assignment tools."""
    return _without_regions(_without_regions(source, SOLUTION_MARKERS), HIDDEN_MARKERS)


def _assignment_cells(cells: list, name: str) -> list:
    """A chapter's cells for its assignment: the title, the set-up code cells before the first section,
    and the whole "## Exercises" section."""
    out, phase, found = [], "head", False
    for cell in cells:
        if cell.cell_type == "code":
            if phase in ("head", "exercises"):
                out.append(cell)
            continue
        kept, fence = [], None
        for line in cell.source.split("\n"):
            m = PLAIN_FENCE.match(line) or FENCE.match(line)
            if fence is None and line.startswith("## "):
                found = found or line.strip() == "## Exercises"
                phase = "exercises" if line.strip() == "## Exercises" else "done" if phase == "exercises" else "body"
            if phase == "exercises" or (phase == "head" and line.startswith("# ") and fence is None):
                kept.append(line)
            if fence is None and m:
                fence = m.group("fence")
            elif fence is not None and _closes(line, fence):
                fence = None
        if kept:
            out.append(nbformat.v4.new_markdown_cell("\n".join(kept)))
    if not found:
        raise ValueError(f"{name}: no '## Exercises' section, so no assignment can be made from it")
    return out


def _check_hidden_tests(chapter: _Chapter, source: str) -> None:
    """A check cell with hidden tests speaks to the student: its visible check says ``hidden_tests=True`` (so
    that it never calls an answer right that a hidden test rejects), and every hidden ``assert`` carries a
    message (nbgrader shows a bare ``AssertionError`` otherwise); a check that announces hidden tests has some."""
    hidden = solution_regions(source, HIDDEN_MARKERS)
    visible = ast.parse(_without_regions(source, HIDDEN_MARKERS, []))
    announced = any(isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check"
                    and any(k.arg == "hidden_tests" and getattr(k.value, "value", False) is True for k in node.keywords)
                    for node in ast.walk(visible))
    if hidden and not announced:
        raise chapter.error("a check cell with hidden tests whose check() does not say hidden_tests=True: it would "
                            "tell the student an answer is right that a hidden test may reject")
    if announced and not hidden:
        raise chapter.error("check(..., hidden_tests=True) in a cell without hidden tests")
    bare = [node for node in ast.walk(ast.parse(textwrap.dedent("\n".join(hidden))))
            if isinstance(node, ast.Assert) and node.msg is None]
    if bare:
        raise chapter.error(f"a hidden test without a message ({ast.unparse(bare[0])}): write what is wrong, in the "
                            "student's words, without the answer")


def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False, points: int = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


# --------------------------------------------------------------------------------------------
# The notebooks
# --------------------------------------------------------------------------------------------

def launch_notebook(md: Path, root: Path = ROOT, executed: bool = False) -> nbformat.NotebookNode:
    """The launch notebook of one chapter source (``executed``: the variant that carries a run's outputs)."""
    return _notebook(md, root, "launch", executed)


def assignment_notebook(md: Path, variant: str, root: Path = ROOT) -> nbformat.NotebookNode:
    """The assignment of one chapter: ``variant`` ``"instructor"`` (solutions, checks, nbgrader metadata)
    or ``"student"`` (the same, solutions removed)."""
    if variant not in ("instructor", "student"):
        raise ValueError(f"an assignment is 'instructor' or 'student', not {variant!r}")
    return _notebook(md, root, variant)


def _notebook(md: Path, root: Path, variant: str, executed: bool = False) -> nbformat.NotebookNode:
    config = book_config(root)
    site = pages_url(config)
    source = jupytext.read(md)
    chapter = _Chapter(md.stem, _bibliography(root / config["bibtex_bibfiles"][0]), f"{site}book/api.html")
    # number figures and exercises first: the text may point at them before they appear
    for cell in source.cells:
        fig = _figure(cell)
        if fig and fig.get("name"):
            chapter.figures[fig["name"]] = len(chapter.figures) + 1
        elif fig:
            chapter.figures[f"_unnamed{len(chapter.figures)}"] = len(chapter.figures) + 1
        if cell.cell_type == "markdown":
            for label in _exercise_labels(cell.source):
                chapter.exercises[label or f"_unlabelled{len(chapter.exercises)}"] = len(chapter.exercises) + 1

    chosen = source.cells
    if variant != "launch":
        # an assignment counts the exercises before it as the chapter does, and holds only its own glue
        chosen = _assignment_cells(source.cells, md.name)
        first = next((k for k, c in enumerate(chosen) if c.cell_type == "markdown"
                      and c.source.startswith("## Exercises")), len(chosen))
        chapter.glue_allowed = {g for c in chosen[first:] if c.cell_type == "code"
                                for g in re.findall(r"glue\(\s*[\"'](\w+)", c.source)}
        chapter.figure_suffix = " of the chapter"
    cells = _cells(chapter, chosen, variant)

    title = next((k for k, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("# ")), 0)
    if variant != "launch":
        cells[title].source = "# Exercises: " + cells[title].source[2:]
    cells.insert(title + 1, nbformat.v4.new_markdown_cell(_about(md, site, repository_url(config), executed, variant)))
    if chapter.cited:  # under the chapter's own "References" section when it ends with one
        last = [c.source.split("\n", 1)[0] for c in cells if c.cell_type == "markdown" and HEADING.match(c.source)][-1:]
        level = "###" if last == ["## References"] else "##"
        cells.append(nbformat.v4.new_markdown_cell(f"{level} Works cited\n\n" + chapter.bib.reference_list(chapter.cited)))

    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": dict(source.metadata["kernelspec"]),
                   "language_info": {"name": "python"}}
    for k, cell in enumerate(nb.cells):
        cell.id = _cell_id(k, cell)
    return nb


def _cells(chapter: _Chapter, source_cells: list, variant: str) -> list:
    """The translated cells of ``variant``; see the module's docstring for what each variant does."""
    cells, figure_number, gated, exercise, answered, checks = [], 0, None, None, set(), {}
    student, graded = variant == "student", variant != "launch"

    def answer(grade_id: str, text: str):  # a written answer: the model answer, or the student's blank
        meta = _nbgrader(grade_id, solution=True, grade=True, points=1) if graded else {}
        cells.append(nbformat.v4.new_markdown_cell(ANSWER_STUB if student else text, metadata=meta))

    for cell in source_cells:
        if cell.cell_type == "markdown":
            for piece in _pieces(cell.source):
                if piece[0] == "text" and gated and graded:  # a coding exercise's written part
                    if f"{gated}-answer" in answered:
                        raise chapter.error(f"the solution of {gated!r} has prose in two places: write its code "
                                            "cells first and the written answer after them, in one piece")
                    answered.add(f"{gated}-answer")
                    answer(f"{gated}-answer", chapter.markdown(piece[1]))
                elif piece[0] == "text":
                    labels = _exercise_labels(piece[1])
                    exercise = labels[-1] if labels else exercise
                    text = chapter.markdown(piece[1])
                    cells.extend(nbformat.v4.new_markdown_cell(p) for p in _split_at_headings(text))
                elif piece[0] == "solution":
                    label, body = piece[1], chapter.markdown(piece[2])
                    if variant == "launch":
                        cells.append(nbformat.v4.new_markdown_cell(chapter.directive("solution", label, {}, body)))
                    else:
                        answer(f"{label}-answer", body)
                elif piece[0] == "start":
                    if piece[1] not in chapter.exercises:
                        raise chapter.error(f"a solution for {piece[1]!r}, which is no exercise of this chapter")
                    gated = piece[1]
                    if variant == "launch":
                        cells.append(nbformat.v4.new_markdown_cell(
                            f"**Solution to Exercise {chapter.exercises[gated]}** (the check after it says whether "
                            "it is right)"))
                else:
                    if gated is None:
                        raise chapter.error("{solution-end} without {solution-start}")
                    gated = None
            continue
        tags = cell.metadata.get("tags", [])
        metadata = dict(cell.metadata)
        text = cell.source
        if gated:
            if SOLUTION_MARKERS[0] not in text:
                raise chapter.error(f"a code cell of the solution of {gated!r} has no {SOLUTION_MARKERS[0]!r} "
                                    "region: mark what the student writes")
            if variant == "launch":
                text = reader_code(text)
            else:
                text = _without_regions(text, SOLUTION_MARKERS, CODE_STUB) if student else text
                metadata.update(_nbgrader(f"{gated}-code", solution=True))
        elif "check" in tags:
            if exercise is None:
                raise chapter.error("a check cell before any exercise")
            _check_hidden_tests(chapter, text)
            if variant == "launch":
                text = reader_code(text)
            else:
                text = _without_regions(text, HIDDEN_MARKERS, []) if student else text
                checks[exercise] = checks.get(exercise, 0) + 1
                suffix = "" if checks[exercise] == 1 else str(checks[exercise])
                metadata.update(_nbgrader(f"{exercise}-check{suffix}", grade=True, points=1))
        elif graded and "parameters" in tags:
            if PROFILE_DEFAULT not in text:
                raise chapter.error(f"the parameters cell does not read {PROFILE_DEFAULT!r}")
            text = text.replace(PROFILE_DEFAULT, PROFILE_DEFAULT.replace('"book"', '"quick"'))
        elif any(m in text for m in SOLUTION_MARKERS + HIDDEN_MARKERS):
            raise chapter.error("solution or hidden-test markers outside a solution or check cell")
        cells.append(nbformat.v4.new_code_cell(text, metadata=metadata))
        fig = _figure(cell)
        if fig and variant == "launch":
            figure_number += 1
            caption = chapter.markdown(" ".join(str(fig.get("caption", "")).split()))
            cells.append(nbformat.v4.new_markdown_cell(f"**Figure {figure_number}.** {caption}"))
    if gated:
        raise chapter.error(f"the solution of {gated!r} is never closed with {{solution-end}}")
    return cells


def _about(md: Path, site: str, repo: str, executed: bool = False, variant: str = "launch") -> str:
    page = f"{site}chapters/{md.stem}.html"
    source = f"[`chapters/{md.name}`]({repo}/blob/main/chapters/{md.name})"
    if variant != "launch":
        text = (f"**The exercises of a chapter of the [genviz book]({site})**: read the chapter first, on [its web "
                f"page]({page}). This notebook is generated from {source} and runs in the `quick` profile: each "
                "exercise takes seconds to a minute on a laptop. Run the cells from the top. ")
        # one text for both copies: nbgrader releases the instructor's copy to students as it is, cell for cell
        text += ("In a coding exercise, replace `# YOUR CODE HERE` and `raise NotImplementedError()` with your "
                 "code; the cell after it checks your answer, printing ✓ when it is right (or, where the grader "
                 "runs further tests, when it passes the visible check) and \"Not yet\" with a hint when it is not; "
                 f"it never prints the answer. Write your written answers where it says {ANSWER_STUB}. (The "
                 "instructor's copy of this notebook has the solutions filled in.)")
        return _quote(text)
    head = (f"**This is a notebook of the [genviz book]({site})** — the same chapter as [its web page]({page}), "
            f"generated from {source}. ")
    if executed:
        return _quote(head + "It holds the outputs and the numbers of the run that built the web page; rerun "
                      "the cells from the top to compute them again (`PROFILE = \"quick\"`, written in the cell "
                      "that sets `PROFILE`, checks the code in about a minute).")
    return _quote(
        head + "Run the cells from the top. A number that the text refers to is written here as its name in "
        "angle brackets, like `⟨name of the number⟩`: the cell that computes it prints that name with its value "
        "(the web page shows the values in the text). To check the code in about a minute, write "
        "`PROFILE = \"quick\"` in the cell that sets `PROFILE`; `\"book\"` reruns the book's experiments.")


def executed_notebook(md: Path, run: nbformat.NotebookNode, glued: dict, root: Path = ROOT) -> nbformat.NotebookNode:
    """The launch notebook with the outputs of ``run`` (the book build's execution of ``md``) and the glued
    values written into the text: what the book's download button hands a reader."""
    nb = launch_notebook(md, root, executed=True)
    ours = [c for c in nb.cells if c.cell_type == "code"]
    theirs = [c for c in run.cells if c.cell_type == "code"]
    shown = [reader_code(c.source) for c in theirs]
    if [c.source for c in ours] != shown:  # the launch notebook shows a solution's code without the markers
        raise ValueError(f"{md.name}: the executed notebook's code cells differ from the chapter source")
    for mine, done in zip(ours, theirs):
        mine.outputs, mine.execution_count = done.get("outputs", []), done.get("execution_count")
    values = {name: _glued_text(entry) for name, entry in glued.items()}
    pattern = re.compile(re.escape(PLACEHOLDER).replace(re.escape("{}"), r"(\w+)"))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = pattern.sub(lambda m: values.get(m.group(1)) or m.group(0), cell.source)
    if "widgets" in run.metadata:  # the widgets' saved state, so that saved frame players still show
        nb.metadata["widgets"] = run.metadata["widgets"]
    return nb


def _glued_text(entry: dict) -> str | None:
    import ast

    text = (entry.get("data") or {}).get("text/plain")
    if text is None:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


def write(md: Path, root: Path = ROOT) -> Path:
    """Generate and write ``chapters/X.ipynb`` beside ``md``; returns its path."""
    path = md.with_suffix(".ipynb")
    nbformat.write(launch_notebook(md, root), path)
    return path
