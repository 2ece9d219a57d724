"""Run the launch notebooks the way a student opens them in Colab, and fail loudly if one does not run.

For each run this script

1. makes a fresh virtual environment with Colab's kind of stack: ``torch==2.13.0`` first, then
   ``tests/colab/requirements-colab.txt`` and the chosen ipywidgets (7.7.1, what Colab has shipped, or
   8.x) — no myst-nb, no jupyter-book;
2. installs genviz from a copy of this checkout with pip, *not* editable, as the chapters' install cell
   does in Colab, and checks that this changed no package that was already there (no torch reinstall,
   no downgrade) and brought in no book-build package;
3. serves Fashion-MNIST's four files from a local HTTP server on 127.0.0.1;
4. runs every chosen launch notebook (``chapters/X.ipynb``) with papermill in the ``quick`` profile from a
   folder outside the repository, with ``GENVIZ_DOWNLOAD=1``, ``GENVIZ_FASHION_MNIST_URL`` at the
   server and ``GENVIZ_FASHION_MNIST`` an empty folder of its own, so the data arrives only by download;
5. checks each run: no error, the data was downloaded (chapters 1-5), and every ``⟨name⟩`` the
   notebook's text points at was printed by a cell.

Usage: ``python tools/colab_check.py --widgets 7 [--chapters 02_poisoning ...]`` (``make test-colab``
runs all chapters with ipywidgets 7.7.1 and 8.x).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the cell that makes sure the chapter's data is there (genviz_lib.notebook.setup with needs=, or data.require)
DATA_CHECK = re.compile(r"data\.require\(|setup\(PROFILE,\s*needs=")
WIDGETS = {"7": "ipywidgets==7.7.1", "8": "ipywidgets==8.1.9"}
BOOK_ONLY = ("myst-nb", "myst_nb", "jupyter-book", "jupyter_book", "sphinx")
FASHION = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    """Run a command; its output is shown only when it fails."""
    kw.setdefault("capture_output", True)
    result = subprocess.run([str(c) for c in cmd], text=True, **kw)
    if result.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def freeze(python: Path) -> dict[str, str]:
    out = sh(python, "-m", "pip", "list", "--format=json").stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def make_env(venv: Path, widgets: str, reuse: bool = False) -> Path:
    if reuse and (venv / ".ready").exists():
        return venv / "bin" / "python"
    shutil.rmtree(venv, ignore_errors=True)
    sh(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling all of torch and Jupyter up front takes as long as installing them; the
    # notebooks' kernels compile what they import (their environment drops PYTHONDONTWRITEBYTECODE)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    sh(*pip, "torch==2.13.0")  # first and pinned: anything else would pull a multi-GB CUDA build
    sh(*pip, "-r", ROOT / "tests" / "colab" / "requirements-colab.txt", WIDGETS[widgets])
    (venv / ".ready").touch()
    return python


def install_genviz(python: Path, work: Path) -> None:
    """``pip install`` a copy of the checkout (as ``pip install git+URL`` does), and check what it changed."""
    copy = work / "genviz-src"
    shutil.rmtree(copy, ignore_errors=True)
    sh(python, "-m", "pip", "uninstall", "-y", "-q", "genviz_lib")  # left by an earlier run (--reuse-env)
    ignore = shutil.ignore_patterns(".git", ".venv", "_build", "data", "*.egg-info", "__pycache__", "build")
    shutil.copytree(ROOT, copy, ignore=ignore)
    before = freeze(python)
    sh(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", copy)
    after = freeze(python)
    changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    if changed:
        raise SystemExit(f"installing genviz changed packages Colab already has: {changed}")
    added = sorted(set(after) - set(before))
    book = [p for p in added if p.startswith(BOOK_ONLY)]
    if book:
        raise SystemExit(f"installing genviz brought in book-build packages: {book}")
    print(f"  genviz installed; it added {', '.join(added)}")


class _Handler(http.server.SimpleHTTPRequestHandler):
    served: list[str] = []

    def log_message(self, fmt, *args):  # quiet, but keep count of what was fetched
        if args and str(args[1]) == "200":
            _Handler.served.append(self.path.lstrip("/"))


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def fashion_source() -> Path:
    for folder in (os.environ.get("GENVIZ_FASHION_MNIST"), "/usr/share/datasets/fashion-mnist"):
        if folder and all((Path(folder) / f).is_file() for f in FASHION):
            return Path(folder)
    raise SystemExit("this check serves Fashion-MNIST from a local copy: install dataset-fashion-mnist "
                     "(make data) or set GENVIZ_FASHION_MNIST")


def _papermill(venv: Path, notebook: Path, home: Path, timeout: int, **genviz_env) -> tuple[Path, subprocess.CompletedProcess]:
    """Run a launch notebook in the quick profile from ``home/cwd``, outside the repository (as Colab's /content)."""
    outside = home / "cwd"
    outside.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GENVIZ_", "JUPYTER", "PYTHON", "VIRTUAL_ENV", "MPLBACKEND"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               JUPYTER_PATH=str(venv / "share" / "jupyter"), JUPYTER_DATA_DIR=str(home / "jupyter"),
               **genviz_env)  # the results cache: ~/.cache/genviz under this HOME, as for any pip install
    out = home / f"{notebook.stem}.out.ipynb"
    result = subprocess.run([venv / "bin" / "papermill", notebook, out, "-p", "PROFILE", "quick", "-k", "python3",
                             "--cwd", outside, "--execution-timeout", str(timeout), "--log-level", "ERROR"],
                            env=env, cwd=outside, text=True, capture_output=True, timeout=timeout + 120)
    return out, result


def run_chapter(venv: Path, notebook: Path, work: Path, url: str, timeout: int) -> float:
    home = work / notebook.stem
    shutil.rmtree(home, ignore_errors=True)
    data_dir = home / "fashion-mnist"  # empty: the chapter can only download into it
    data_dir.mkdir(parents=True)
    start = time.perf_counter()
    out, result = _papermill(venv, notebook, home, timeout, GENVIZ_DOWNLOAD="1",
                             GENVIZ_FASHION_MNIST=str(data_dir), GENVIZ_FASHION_MNIST_URL=url)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{notebook.stem} failed in the Colab-like environment ({seconds:.0f} s):\n"
                         f"{result.stderr[-4000:]}")
    check_output(out, data_dir)
    return seconds


def run_offline(venv: Path, notebook: Path, work: Path, url: str, timeout: int) -> str:
    """Run a chapter with no data and a dead download site: it must stop at its data check, before training."""
    home = work / f"{notebook.stem}-offline"
    shutil.rmtree(home, ignore_errors=True)
    out, result = _papermill(venv, notebook, home, timeout, GENVIZ_DOWNLOAD="1",
                             GENVIZ_FASHION_MNIST=str(home / "fashion-mnist"), GENVIZ_FASHION_MNIST_URL=url)
    if result.returncode == 0:
        raise SystemExit(f"{notebook.stem} ran offline with no data: the data check did not stop it")
    code = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    ran = [i for i, c in enumerate(code) if c.get("execution_count")]
    first = next(i for i, c in enumerate(code) if DATA_CHECK.search("".join(c["source"])))
    error = next(o for o in code[failed[0]]["outputs"] if o.get("output_type") == "error") if failed else {}
    if failed != [first] or max(ran) > first or error.get("ename") != "DataUnavailable":
        raise SystemExit(f"{notebook.stem} offline: expected DataUnavailable in code cell {first} (the data check) "
                         f"and nothing run after it; got errors in cells {failed}, cells run {ran}, {error.get('ename')}")
    if (home / "fashion-mnist").exists():
        raise SystemExit(f"{notebook.stem} offline: the failed download left {home / 'fashion-mnist'} behind")
    return error["evalue"]


def check_output(out: Path, data_dir: Path) -> None:
    nb = json.loads(out.read_text())
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    printed = "\n".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                        for o in c.get("outputs", []))
    figures = sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
                  for o in c.get("outputs", []))
    captions = markdown.count("**Figure ")
    if figures < captions:
        raise SystemExit(f"{out.name}: {captions} figure captions but only {figures} figures were drawn")
    wanted = set(re.findall(r"⟨(\w+)⟩", markdown))
    missing = sorted(n for n in wanted if f"⟨{n}⟩ = " not in printed and f"⟨{n}⟩:" not in printed)
    if missing:
        raise SystemExit(f"{out.name}: the text points at values no cell printed: {missing}")
    if DATA_CHECK.search("".join("".join(c["source"]) for c in nb["cells"])):
        got = sorted(p.name for p in data_dir.iterdir())
        if got != sorted(FASHION):
            raise SystemExit(f"{out.name}: expected Fashion-MNIST downloaded into {data_dir}, found {got}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widgets", choices=sorted(WIDGETS), default="7")
    parser.add_argument("--chapters", nargs="*", help="chapter names (default: all)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--work", type=Path, help="where to build the environment (default: a temporary folder)")
    parser.add_argument("--reuse-env", action="store_true",
                        help="keep a Colab-like environment already built in --work (to iterate; genviz is reinstalled)")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "chapters").glob("*.ipynb"))
    if args.chapters:
        notebooks = [n for n in notebooks if n.stem in args.chapters]
        unknown = set(args.chapters) - {n.stem for n in notebooks}
        if unknown:
            raise SystemExit(f"no launch notebook for {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="genviz-colab-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        print(f"Colab-like environment with {WIDGETS[args.widgets]} in {work}")
        python = make_env(work / "venv", args.widgets, reuse=args.reuse_env and args.work is not None)
        install_genviz(python, work)
        print(f"  set up in {time.perf_counter() - start:.0f} s")
        server, url = serve(fashion_source())
        try:
            for nb in notebooks:
                seconds = run_chapter(work / "venv", nb, work, url, args.timeout)
                print(f"  {nb.name}: ran in {seconds:.0f} s (quick), Fashion-MNIST served "
                      f"{sum(f in FASHION for f in _Handler.served)} files so far")
        finally:
            server.shutdown()
            server.server_close()
        needs_data = [nb for nb in notebooks if DATA_CHECK.search(nb.read_text())]
        if needs_data:  # the server is gone: its address is now a dead download site
            message = run_offline(work / "venv", needs_data[0], work, url, args.timeout)
            print(f"  {needs_data[0].name} offline with no data stops at its set-up cell, before any training:\n    "
                  + message.replace("\n", "\n    "))
        print(f"all {len(notebooks)} launch notebooks ran with {WIDGETS[args.widgets]} "
              f"in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
