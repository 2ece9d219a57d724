"""Fingerprints of code, so that a cached result or an executed chapter is never older than the code behind it.

A fingerprint hashes what a module *does*: its syntax tree without docstrings (comments are not in the
tree), so editing prose changes nothing, while any change to the code does.

- :func:`library_fingerprint` — the ``genviz_lib`` modules given (or all of them) together with every
  ``genviz_lib`` module they import, directly or not;
- :func:`code_fingerprint` — what computed a result: for a function of ``genviz_lib``, its module and that
  module's imports; for a function defined elsewhere (a chapter's cell), the whole library and the
  function's own source.

The results cache keys each entry on :func:`code_fingerprint` of its recipe; the book's build re-executes
every chapter whose last execution saw another :func:`library_fingerprint` (``book/_ext/genviz_book.py``).
Fingerprints are computed once per process, from the files as they were then: the code a process has loaded.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from pathlib import Path
from typing import Callable, Iterable

PACKAGE = Path(__file__).resolve().parent


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(source: str) -> str:
    """The hash of a piece of Python source's syntax tree without docstrings."""
    tree = _without_docstrings(ast.parse(textwrap.dedent(source)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def _imports(tree: ast.AST, package: str) -> set[str]:
    """The ``genviz_lib`` modules that a module of ``package`` (dotted, relative to ``genviz_lib``; ``""`` for
    the top level) may import: ``from . import x``, ``from ..x import y``, ``import genviz_lib.x`` and the
    like. Names that are not modules (``from .x import function``) are dropped by the caller. A package's
    ``__init__`` counts only when it is imported by name: it lists modules, it does not compute."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                base = parts[:len(parts) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "genviz_lib":
                target = node.module.removeprefix("genviz_lib").lstrip(".")
            else:
                continue
            found |= {target} | {f"{target}.{a.name}".lstrip(".") for a in node.names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("genviz_lib."):
                    found.add(a.name.removeprefix("genviz_lib."))
    return found


def _module_name(path: Path, root: Path) -> tuple[str, str]:
    """``(name, package)`` of a file of the package: ``experiments/wu2017.py`` → ``("experiments.wu2017",
    "experiments")``, ``experiments/__init__.py`` → ``("experiments", "experiments")``, ``data.py`` →
    ``("data", "")``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


@functools.lru_cache(maxsize=None)
def _modules(root: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """Every module of the package at ``root`` (subpackages too, by dotted name;
    ``genviz_lib/__init__.py`` is left out: it only lists the layers): ``name → (fingerprint, modules it may import)``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        name, package = _module_name(path, root)
        if not name or "__pycache__" in path.parts:
            continue
        source = path.read_text()
        out[name] = (source_fingerprint(source), frozenset(_imports(ast.parse(source), package)))
    return out


def library_fingerprint(modules: Iterable[str] | None = None, root: Path = PACKAGE) -> str:
    """The fingerprint of ``genviz_lib`` modules (names relative to the package, e.g. ``["volume"]`` or
    ``["experiments.wu2017"]``; all when ``None``) and of every ``genviz_lib`` module they import, directly
    or through others."""
    table = _modules(Path(root))
    todo = list(table) if modules is None else [m.removeprefix("genviz_lib.") for m in modules]
    unknown = [m for m in todo if m not in table]
    if unknown:
        raise ValueError(f"no genviz_lib module {unknown} in {root}")
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(d for d in table[m][1] if d in table)
    digest = hashlib.sha256()
    for m in sorted(seen):
        digest.update(f"{m}:{table[m][0]};".encode())
    return digest.hexdigest()


def code_fingerprint(fn: Callable) -> str:
    """The fingerprint of the code that ``fn`` runs (see the module docstring), as 24 hex digits."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = inspect.unwrap(fn)  # a decorated function: the code inside
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("genviz_lib."):
        return library_fingerprint([module.split(".", 1)[1]])[:24]
    try:
        source = inspect.getsource(fn)
        try:
            own = source_fingerprint(source)
        except SyntaxError:  # a lambda cut out of a longer expression
            own = hashlib.sha256(" ".join(source.split()).encode()).hexdigest()
    except (OSError, TypeError):  # no source to be had (a builtin, an exec'd string): the library alone
        own = ""
    return hashlib.sha256(f"{library_fingerprint()}:{own}".encode()).hexdigest()[:24]
