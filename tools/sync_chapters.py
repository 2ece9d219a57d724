"""Keep every chapter's Colab install cell and its paired .ipynb in step with the sources.

The repository URL lives in one place, ``repository.url`` of ``_config.yml``; this script writes it
into the install cell of each ``chapters/*.md`` and regenerates each paired ``.ipynb`` (no outputs)
with jupytext. ``tests/test_chapters.py`` fails when this has not been run after an edit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parent.parent
INSTALL_URL = re.compile(r"git\+https?://[^\"'\s]+")


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def main() -> int:
    url = repository_url()
    for md in sorted((ROOT / "chapters").glob("*.md")):
        text = md.read_text()
        new = INSTALL_URL.sub(f"git+{url}", text)
        if new != text:
            md.write_text(new)
            print(f"{md.relative_to(ROOT)}: install cell now points at {url}")
        notebook = jupytext.read(md)
        jupytext.write(notebook, md.with_suffix(".ipynb"), fmt="ipynb")
        print(f"{md.with_suffix('.ipynb').relative_to(ROOT)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
