"""Every chapter as a notebook in the ``quick`` profile, for ``make test``'s nbval run: ``python
tools/quick_notebooks.py OUT`` writes ``OUT/<chapter>.ipynb`` from ``chapters/<chapter>.md`` (jupytext) with
``PROFILE = "quick"`` injected after the parameters cell (papermill's ``--prepare-only``), all in one
process (a jupytext and a papermill command per chapter cost two seconds each just to start)."""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import papermill

ROOT = Path(__file__).resolve().parent.parent


def write(out: Path, root: Path = ROOT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for md in sorted((root / "chapters").glob("*.md")):
        source = out / f"{md.stem}.src.ipynb"
        jupytext.write(jupytext.read(md), source)
        target = out / f"{md.stem}.ipynb"
        papermill.execute_notebook(str(source), str(target), parameters={"PROFILE": "quick"}, prepare_only=True,
                                   log_output=False, progress_bar=False)
        source.unlink()
        written.append(target)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for path in write(Path(sys.argv[1])):
        print(path)
