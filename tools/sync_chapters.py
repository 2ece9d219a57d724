"""Keep every chapter's Colab install cell and its launch notebook in step with the sources.

The repository URL lives in one place, ``repository.url`` of ``_config.yml``. This script writes it into
the install cell of each ``chapters/*.md`` and regenerates each launch notebook ``chapters/*.ipynb``
(no outputs; see ``tools/launch_notebooks.py``). ``python tools/sync_chapters.py --url URL`` first sets
the URL in ``_config.yml`` (``make sync URL=...``). The tests fail when this has not been run after an edit.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import launch_notebooks

ROOT = launch_notebooks.ROOT
INSTALL_URL = re.compile(r"git\+https?://[^\"'\s]+")
CONFIG_URL = re.compile(r"^(repository:\s*\n(?:[ \t]+#[^\n]*\n)*[ \t]+url:[ \t]*)(\S+)", re.M)


def set_repository_url(url: str, root: Path = ROOT) -> None:
    if not re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+", url.rstrip("/")):
        raise SystemExit(f"not a repository URL: {url!r} (expected https://github.com/OWNER/REPO)")
    path = root / "_config.yml"
    text = path.read_text()
    new, n = CONFIG_URL.subn(lambda m: m.group(1) + url.rstrip("/"), text)
    if n != 1:
        raise SystemExit("could not find repository.url in _config.yml")
    path.write_text(new)
    print(f"_config.yml: repository.url is now {url.rstrip('/')}")


def sync(root: Path = ROOT) -> None:
    url = launch_notebooks.repository_url(launch_notebooks.book_config(root))
    for md in sorted((root / "chapters").glob("*.md")):
        text = md.read_text()
        new = INSTALL_URL.sub(f"git+{url}", text)
        if new != text:
            md.write_text(new)
            print(f"{md.relative_to(root)}: install cell now points at {url}")
        path = launch_notebooks.write(md, root)
        print(f"{path.relative_to(root)} written")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="set repository.url in _config.yml first")
    args = parser.parse_args(argv)
    if args.url:
        set_repository_url(args.url)
    sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
