"""Profiles, device choice, seeding and the on-disk results cache.

Every chapter has one papermill parameter, ``PROFILE``:

=========  ==================================  ==========================================
profile    where                               scale
=========  ==================================  ==========================================
``quick``  tests and CI (nbval)                tiny subsets, few steps: the code path only
``book``   the published book (default)        every phenomenon shown clearly on a CPU
``full``   a GPU                               the papers' own setups (CIFAR-10, SVHN)
=========  ==================================  ==========================================
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import random
import re
import socket
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import __version__
from .fingerprint import code_fingerprint

PROFILES = ("quick", "book", "full")
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Profile:
    """A validated profile name with a helper that picks a per-profile value."""

    name: str

    def pick(self, quick: Any, book: Any, full: Any = _MISSING) -> Any:
        """Return the value for this profile; ``full`` defaults to the ``book`` value."""
        if self.name == "quick":
            return quick
        if self.name == "book" or full is _MISSING:
            return book
        return full

    @property
    def is_quick(self) -> bool:
        return self.name == "quick"

    def __str__(self) -> str:
        return self.name


def get_profile(name: str | Profile | None = None) -> Profile:
    """Validate a profile name (``None`` reads ``GENVIZ_PROFILE``, else ``"book"``).

    >>> get_profile("quick").pick(quick=10, book=1000)
    10
    """
    if isinstance(name, Profile):
        return name
    if name is None:
        name = os.environ.get("GENVIZ_PROFILE", "book")
    if not isinstance(name, str) or name.strip().lower() not in PROFILES:
        valid = ", ".join(repr(p) for p in PROFILES)
        raise ValueError(
            f"unknown profile {name!r}: choose one of {valid} "
            "(set PROFILE in the chapter's parameters cell, or papermill -p PROFILE quick)"
        )
    return Profile(name.strip().lower())


def get_device(preference: str | torch.device | None = None) -> torch.device:
    """Choose the compute device: CUDA, then Apple MPS, then the CPU.

    ``preference`` (or the ``GENVIZ_DEVICE`` environment variable) overrides the choice:
    ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``. Asking for a device that is not
    there is an error, not a silent fallback.
    """
    if isinstance(preference, torch.device):
        return preference
    pref = (preference or os.environ.get("GENVIZ_DEVICE") or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = pref.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {pref!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {pref!r} was asked for but this PyTorch sees no CUDA GPU; "
            "use device='auto' (or unset GENVIZ_DEVICE) to run on what is here"
        )
    if kind == "mps" and not _mps_available():
        raise RuntimeError("device 'mps' was asked for but Apple MPS is not available; use device='auto'")
    return torch.device(pref)


def env_flag(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable: ``1/true/yes/on`` and ``0/false/no/off`` (any case).

    An unset or empty variable gives ``default``; any other value is an error that names the variable,
    so a typo never silently leaves a switch in the wrong position.
    """
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is not a yes/no value: use 1/true/yes/on or 0/false/no/off")


#: Set to 1 by the book's Sphinx extension (``book/_ext/genviz_book.py``) before any chapter executes.
BOOK_BUILD = "GENVIZ_BOOK_BUILD"


def in_book_build() -> bool:
    """True while Jupyter Book executes a chapter for the published book (kernels inherit the variable)."""
    return env_flag(BOOK_BUILD)


def in_colab() -> bool:
    """True inside Google Colab."""
    import sys

    return "google.colab" in sys.modules


def on_binder() -> bool:
    """True in a Binder session (mybinder.org sets these variables in every container it starts)."""
    return any(os.environ.get(v) for v in ("BINDER_SERVICE_HOST", "BINDER_LAUNCH_HOST", "BINDER_REQUEST",
                                           "BINDER_REPO_URL"))


def downloads_allowed() -> bool:
    """Whether a data set that is not found may be downloaded.

    ``GENVIZ_DOWNLOAD`` decides when it is set (``1`` or ``0``); otherwise downloads are allowed in
    Colab and on Binder, where a reader has no other way to get the data, and nowhere else: builds
    and tests never reach for the network unless told to.
    """
    if os.environ.get("GENVIZ_DOWNLOAD", "").strip():
        return env_flag("GENVIZ_DOWNLOAD")
    return in_colab() or on_binder()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and return a fresh ``torch.Generator``."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# The results cache
# --------------------------------------------------------------------------------------------

def _checkout_data_dir() -> Path | None:
    """``data/`` of a source checkout (the library imported from it, editable install), else ``None``."""
    repo = Path(__file__).resolve().parent.parent
    return repo / "data" if (repo / "_config.yml").exists() and (repo / "data").is_dir() else None


def default_cache_dir() -> Path:
    """``GENVIZ_CACHE_DIR``, else ``data/cache`` of a source checkout, else ``~/.cache/genviz``."""
    env = os.environ.get("GENVIZ_CACHE_DIR")
    if env:
        return Path(env)
    checkout = _checkout_data_dir()
    return checkout / "cache" if checkout else Path.home() / ".cache" / "genviz"


def data_root() -> Path:
    """Where downloaded data sets go: ``GENVIZ_DATA_DIR``, else ``data/`` of a source checkout, else
    ``~/.cache/genviz-data`` (a pip-installed library, as in Colab)."""
    env = os.environ.get("GENVIZ_DATA_DIR")
    if env:
        return Path(env)
    return _checkout_data_dir() or Path.home() / ".cache" / "genviz-data"


def results_dir() -> Path:
    """Where chapters write the data behind their pages: ``results/`` of :func:`data_root` (``data/results`` of
    a checkout). The book build publishes the files of its profile from here."""
    return data_root() / "results"


def publish_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it, renamed into place when complete (a reader
    never sees half a file, a crash leaves the old one), readable by everyone like any published file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_tmp_suffix()}.tmp")
    try:
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _canonical(obj: Any) -> Any:
    """Turn a configuration into plain JSON values, refusing what cannot be hashed faithfully."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isnan(value) or math.isinf(value):
            return repr(value)
        return value
    if isinstance(obj, Profile):
        return obj.name
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__dataclass__": type(obj).__name__, **_canonical(dataclasses.asdict(obj))}
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    raise TypeError(
        f"cannot use a {type(obj).__name__} in a cache configuration: use numbers, strings, "
        "lists and dicts that describe how the result is made (not the result's inputs themselves)"
    )


_MAGIC = b"genviz-cache-1\n"  # then the payload's SHA-256 in hex and a newline, then the payload (torch.save)
_TMP = re.compile(r"\.tmp-(?P<host>[^.]+)-(?P<pid>\d+)$")  # <entry>.tmp-<host>-<pid>: a cache may be shared by
# machines (a cluster's file system), and a process id only says something on its own host


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "host"


def _tmp_suffix() -> str:
    return f".tmp-{_host()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def job_seed(name: str, config: Any) -> int:
    """The seed a cached computation runs under: a hash of its cache name and configuration (not of the code,
    so that editing the library does not reshuffle every result)."""
    payload = json.dumps({"name": name, "config": _canonical(config)}, sort_keys=True, separators=(",", ":"))
    return int(hashlib.sha256(payload.encode()).hexdigest()[:8], 16)


def compute_seeded(name: str, config: Any, compute: Callable[[], Any]) -> Any:
    """``compute()`` with Python's, NumPy's and torch's generators seeded by :func:`job_seed`, every one of them
    restored afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []):
            seed_everything(job_seed(name, config))
            return compute()
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class ResultsCache:
    """Results on disk, keyed by a hash of (name, configuration, the code that computed them, library version).

    The code is :func:`~genviz_lib.fingerprint.code_fingerprint` of the recipe: editing a recipe, or a
    ``genviz_lib`` module it depends on, makes its old entries unreachable, so a result is never older
    than its code. Each entry is written to a temporary file and renamed into place (a kill mid-write never
    leaves a half-written entry under its real name, and the temporary files of dead processes are swept
    away when a cache is opened and by :meth:`clear`); it carries a SHA-256 checksum, verified on every
    read. An entry that cannot be read or does not match its checksum is reported in one warning line,
    deleted and recomputed. :meth:`map` stores each item as soon as it is finished, so a crash keeps
    everything done before it.
    """

    def __init__(self, root: str | Path | None = None, version: str = __version__, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.version = version
        self.enabled = enabled
        if enabled:
            self.sweep()

    def key(self, name: str, config: Any, code: str = "") -> str:
        payload = json.dumps(
            {"name": name, "config": _canonical(config), "code": code, "version": self.version},
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def path(self, name: str, config: Any, code: str = "") -> Path:
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"cache name {name!r} must be non-empty letters, digits, '-', '_' or '.'")
        return self.root / name / f"{self.key(name, config, code)}.pt"

    def get(self, name: str, config: Any, default: Any = None, code: str = "") -> Any:
        """The stored value, or ``default`` when there is none or it cannot be read."""
        if not self.enabled:
            return default
        return self._read(self.path(name, config, code), default)

    def get_key(self, name: str, key: str, default: Any = None) -> Any:
        """The value stored under ``name`` and ``key`` (as :meth:`key` gives it), or ``default``: how a sweep's
        published entries are read back to compare them (:func:`genviz_lib.sweep.compare`)."""
        if not self.enabled or not re.fullmatch(r"[0-9a-f]{24}", key):
            return default
        return self._read(self.path(name, None).with_name(f"{key}.pt"), default)

    def _read(self, path: Path, default: Any) -> Any:
        if not path.exists():
            return default
        try:
            raw = path.read_bytes()
            if not raw.startswith(_MAGIC):
                raise ValueError("not a genviz cache entry (written by an older version?)")
            digest, payload = raw[len(_MAGIC): len(_MAGIC) + 64], raw[len(_MAGIC) + 65:]
            if hashlib.sha256(payload).hexdigest().encode() != digest:
                raise ValueError("it does not match its checksum: damaged on disk")
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
        except Exception as err:  # any unreadable entry is recomputed, never fatal
            warnings.warn(f"cache entry {path} could not be read ({err}); recomputing it", stacklevel=2)
            path.unlink(missing_ok=True)
            return default

    def put(self, name: str, config: Any, value: Any, code: str = "") -> Path:
        path = self.path(name, config, code)
        if not self.enabled:
            return path
        buffer = io.BytesIO()
        torch.save(value, buffer)
        payload = buffer.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(_tmp_suffix())
        try:
            with open(tmp, "wb") as f:
                f.write(_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
                f.write(payload)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def contains(self, name: str, config: Any, code: str = "") -> bool:
        return self.get(name, config, _MISSING, code) is not _MISSING

    def cached(self, name: str, config: Any, compute: Callable[[], Any], code: str | None = None) -> Any:
        """The cached value for ``config`` and the code of ``compute``, computing and storing it when absent.

        ``code`` defaults to :func:`~genviz_lib.fingerprint.code_fingerprint` of ``compute``. A computation
        runs under its own seed (:func:`job_seed` of ``name`` and ``config``) and leaves the caller's random
        state as it found it, so a result is the same whether it is computed alone, after others, or in
        another process (:mod:`genviz_lib.sweep`), and what follows does not depend on whether it was cached.
        """
        code = code_fingerprint(compute) if code is None else code
        return self.fill(name, [(config, compute)], code)[0]

    def map(self, name: str, configs: Iterable[Any], compute: Callable[[Any], Any]) -> list:
        """``[compute(c) for c in configs]`` with every item cached as soon as it is done.

        The items are independent jobs: a sweep (:mod:`genviz_lib.sweep`) runs the missing ones in parallel."""
        code = code_fingerprint(compute)
        return self.fill(name, [(config, functools.partial(compute, config)) for config in configs], code)

    def fill(self, name: str, items: list[tuple[Any, Callable[[], Any]]], code: str) -> list:
        """The values of ``items`` (``(config, compute)`` pairs of one cache name and code), each read back or
        computed (seeded, see :meth:`cached`) and stored as soon as it is done. A sweep's cache overrides this
        to run the missing ones elsewhere."""
        out = []
        for config, compute in items:
            value = self.get(name, config, _MISSING, code)
            if value is _MISSING:
                value = compute_seeded(name, config, compute)
                self.put(name, config, value, code)
            out.append(value)
        return out

    def sweep(self) -> int:
        """Remove the temporary files that killed processes of this host left behind; return how many."""
        removed, host = 0, _host()
        for f in self.root.rglob("*.tmp-*") if self.root.exists() else []:
            m = _TMP.search(f.name)
            pid = int(m["pid"]) if m else None
            if m and m["host"] == host and pid != os.getpid() and not _pid_alive(pid):
                f.unlink(missing_ok=True)
                removed += 1
        return removed

    def clear(self, name: str | None = None) -> int:
        """Delete the entries of one name (or all), and stale temporary files; return how many entries."""
        self.sweep()
        root = self.root / name if name else self.root
        files = list(root.rglob("*.pt")) if root.exists() else []
        for f in files:
            f.unlink()
        return len(files)


def get_cache(root: str | Path | None = None) -> ResultsCache:
    """The default results cache (``GENVIZ_NO_CACHE=1``, ``true``, ``yes`` or ``on`` turns caching off)."""
    return ResultsCache(root, enabled=not env_flag("GENVIZ_NO_CACHE"))
