"""Sweeps: the chapters' recipes run as independent jobs, in this process or on many machines.

A recipe that trains many nets asks the results cache for many entries at once (``cache.map``). A sweep runs
the recipe with a :class:`SweepCache` in its place: each entry that is missing becomes a :class:`Job`, and an
executor runs the jobs — one after another in this process (:class:`InlineExecutor`, the default), in worker
processes (:class:`LocalExecutor`, ``concurrent.futures``), on a Ray cluster (:class:`RayExecutor`,
``pip install "genviz_lib[ray]"``) or on SLURM through submitit (:class:`SlurmExecutor`,
``genviz_lib[slurm]``). Every job writes its result into the shared results cache under the key the
chapter uses (atomically: see :class:`~genviz_lib.config.ResultsCache`), so a chapter run afterwards only
reads. Small nets stay batched as ensembles inside a job (one job is one ``cache.map`` item: a seed's nets
in the poison sweep, a group of poisoned runs in the minefield), as fast as in the chapter.

Every job runs under its own seed (:func:`~genviz_lib.config.job_seed`) and a fixed number of torch threads
(1 unless asked), so the sweep's ``digest`` — a SHA-256 of every result it touched, timings left out — is
the same whatever the executor. Faults: the settings, the executor and its cluster are checked before any
job is submitted; a failed job is run once more and, if it fails again, reported with its error while the
others carry on (their results are kept); a sweep started again after a kill skips what is in the cache.

From Python: ``run_sweep("poison_sweep", "quick", executor=RayExecutor(workers=2))``; from a shell:
``python -m genviz_lib.sweep poison_sweep --profile quick --executor ray --jobs 2`` (``--list`` lists the
recipes; see :mod:`genviz_lib.sweep.__main__`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import os
import re
import shutil
import socket
import tempfile
import time
import traceback
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import PROFILES, ResultsCache, _canonical, _host, _pid_alive, compute_seeded, get_cache, get_profile
from .recipes import RECIPES, Recipe

__all__ = ["Job", "run", "digest_of", "SweepCache", "SweepFailed", "InlineExecutor", "LocalExecutor",
           "RayExecutor", "SlurmExecutor", "EXECUTORS", "make_executor", "SweepPlan", "prepare", "run_sweep", "RECIPES",
           "Recipe", "compare"]


# --------------------------------------------------------------------------------------------
# One job, and what it returns
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Job:
    """One missing cache entry: ``name``, ``config`` and ``code`` key it as the chapter keys it; ``function``
    is the path of the pickled computation (shared by every job of one ``cache.map``, written once beside the
    cache), called with ``config`` when ``with_config`` (a ``map`` item) or alone (a ``cached`` entry)."""

    name: str
    config: Any
    code: str
    function: str
    with_config: bool
    cache_root: str
    threads: int = 1

    @property
    def key(self) -> str:
        return ResultsCache(self.cache_root, enabled=False).key(self.name, self.config, self.code)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.key[:10]}"


_LOADED: dict[str, Any] = {}  # the last computation a worker read (its pickle's path is unique to the sweep)


def run(job: Job) -> dict:
    """Compute ``job`` with ``job.threads`` torch threads under its own seed, store the result in the cache
    and return a record of it: ``name``, ``key``, ``seconds``, ``host`` and ``pid`` (the sweep digests the value
    it reads back from the cache). Picklable, and what every executor calls in its workers."""
    import cloudpickle

    start, threads = time.perf_counter(), torch.get_num_threads()
    function = _LOADED.get(job.function)
    if function is None:  # every job of one cache.map shares the pickled computation: read it once per worker
        with open(job.function, "rb") as f:
            function = cloudpickle.load(f)
        _LOADED.clear()
        _LOADED[job.function] = function
    compute = (lambda: function(job.config)) if job.with_config else function
    torch.set_num_threads(job.threads)
    try:
        value = compute_seeded(job.name, job.config, compute)
    finally:
        torch.set_num_threads(threads)
    cache = ResultsCache(job.cache_root)
    cache.put(job.name, job.config, value, job.code)
    return dict(name=job.name, key=job.key, seconds=time.perf_counter() - start, host=socket.gethostname(),
                pid=os.getpid())


def _is_timing(key: str) -> bool:
    return "seconds" in key  # wall-clock times differ from run to run; they are not results


def _feed(h, obj: Any) -> None:
    if obj is None or isinstance(obj, (bool, int, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, float):
        h.update(f"float:{obj.hex() if math.isfinite(obj) else obj!r};".encode())
    elif isinstance(obj, (np.generic,)):
        _feed(h, obj.item())
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
        h.update(f"tensor:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(raw.numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"array:{obj.dtype}:{obj.shape};".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, torch.nn.Module):
        h.update(f"module:{type(obj).__name__};".encode())
        _feed(h, obj.state_dict())
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)};".encode())
        for k in sorted(obj, key=str):
            if not _is_timing(str(k)):
                _feed(h, str(k))
                _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq:{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__name__}:".encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    elif isinstance(obj, (torch.dtype, torch.device, Path)):
        _feed(h, str(obj))
    else:
        raise TypeError(f"cannot digest a {type(obj).__name__}: results are numbers, strings, tensors, arrays, "
                        "modules, dataclasses, and lists and dicts of those")


def digest_of(value: Any) -> str:
    """A SHA-256 of a result's content: every number, tensor and array bit for bit, dicts in key order,
    entries whose key says ``seconds`` (timings) left out."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Executors: they run jobs and report each one as it ends
# --------------------------------------------------------------------------------------------

Done = Callable[[Job, "dict | None", "str | None"], None]  # (job, record, error): exactly one of the last two


def _error_text(err: BaseException) -> str:
    lines = traceback.format_exception_only(type(err), err)
    return "".join(lines).strip().splitlines()[-1] if lines else repr(err)


def _finish(job: Job, result: Callable[[], dict], done: Done, error_text=_error_text) -> None:
    """Report ``job`` to ``done``: its record from ``result()``, or the error that raised, as one line."""
    try:
        record = result()
    except Exception as err:  # reported, and the sweep goes on with the other jobs
        done(job, None, error_text(err))
    else:
        done(job, record, None)


class InlineExecutor:
    """Every job in this process, one after another (the default)."""

    name = "inline"
    workers = 1

    def check(self) -> None:
        """Raise before anything is submitted when this executor cannot run (nothing to check here)."""

    def run_all(self, jobs: list[Job], done: Done) -> None:
        for job in jobs:
            _finish(job, lambda: run(job), done)

    def close(self) -> None:
        pass


class LocalExecutor(InlineExecutor):
    """``workers`` processes of this machine (``concurrent.futures``, started fresh: no forked torch state)."""

    name = "local"

    def __init__(self, workers: int = 2):
        self.workers = workers
        self._pool = None

    def check(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")

    def run_all(self, jobs: list[Job], done: Done) -> None:
        if self.workers == 1:
            return super().run_all(jobs, done)
        if self._pool is None:  # started once, for every stage of the sweep and its retries
            import multiprocessing

            self._pool = futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        pending = {self._pool.submit(run, job): job for job in jobs}
        for future in futures.as_completed(pending):
            _finish(pending[future], future.result, done)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class RayExecutor(InlineExecutor):
    """Ray: a local cluster of ``workers`` CPUs (``address=None``), or the cluster at ``address`` (``"auto"``
    or ``"ray://host:10001"``). Each job asks for ``threads`` CPUs and ``gpus`` GPUs. On a cluster of several
    machines, the results cache (``GENVIZ_CACHE_DIR``) must be on a file system they all see."""

    name = "ray"

    def __init__(self, workers: int | None = 2, address: str | None = None, gpus: float = 0):
        self.workers, self.address, self.gpus = workers, address, gpus
        self._started = False

    def check(self) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError('the Ray executor needs Ray: pip install "genviz_lib[ray]"') from None
        if self.address is None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"a local Ray cluster needs workers ≥ 1, got {self.workers!r}")
        if self.gpus < 0:
            raise ValueError(f"gpus must be ≥ 0, got {self.gpus}")
        if not ray.is_initialized():
            options = dict(address=self.address) if self.address else dict(num_cpus=self.workers)
            ray.init(**options, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            self._started = True

    def run_all(self, jobs: list[Job], done: Done) -> None:
        import ray

        threads = max(job.threads for job in jobs) if jobs else 1
        remote = ray.remote(num_cpus=threads, num_gpus=self.gpus, max_retries=0)(run)
        pending = {remote.remote(job): job for job in jobs}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                # a task's own error is its cause; a worker that died or a task that could not be scheduled is not
                _finish(pending.pop(ref), lambda: ray.get(ref), done, lambda err: _error_text(
                    err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None else err))

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


class SlurmExecutor(InlineExecutor):
    """SLURM through submitit: one SLURM job per sweep job, logs and pickles in ``folder``. ``cluster="local"``
    runs them as processes of this machine instead (submitit's local executor, at most ``workers`` at a
    time), ``"debug"`` in this process. ``parameters`` go to submitit's ``update_parameters`` (e.g.
    ``slurm_partition="gpu"``, ``gpus_per_node=1``, ``timeout_min=60``)."""

    name = "slurm"

    def __init__(self, folder: str | Path | None = None, cluster: str = "slurm", workers: int = 64,
                 poll: float = 0.5, **parameters: Any):
        self.folder, self.cluster, self.workers, self.poll = folder, cluster, workers, poll
        self.parameters = parameters
        self._submitit = None

    def check(self) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise RuntimeError('the SLURM executor needs submitit: pip install "genviz_lib[slurm]"') from None
        if self.cluster not in ("slurm", "local", "debug"):
            raise ValueError(f"cluster must be 'slurm', 'local' or 'debug', got {self.cluster!r}")
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise RuntimeError("no SLURM here (sbatch is not on PATH); cluster='local' runs the jobs on this machine")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")

    def _executor(self):
        """submitit's executor, made on first use and kept for every stage of the sweep and its retries."""
        if self._submitit is None:
            import submitit

            folder = self.folder or tempfile.mkdtemp(prefix="genviz-submitit-")
            self._submitit = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
            self._submitit.update_parameters(**self.parameters)
            if self.cluster == "slurm":
                self._submitit.update_parameters(slurm_array_parallelism=self.workers)
        return self._submitit

    def run_all(self, jobs: list[Job], done: Done) -> None:
        executor, todo, running = self._executor(), list(jobs), {}
        while todo or running:
            while todo and (self.cluster == "slurm" or len(running) < self.workers):
                job = todo.pop(0)
                running[executor.submit(run, job)] = job
            for handle in [h for h in running if h.done()]:
                # submitit's FailedJobError carries the worker's traceback: its last line is the error
                _finish(running.pop(handle), handle.result, done,
                        lambda err: (str(err).strip().splitlines() or [repr(err)])[-1])
            if running:
                time.sleep(self.poll)


EXECUTORS = {"inline": InlineExecutor, "local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}


def make_executor(kind: str, jobs: int = 1, address: str | None = None, cluster: str = "slurm",
                  folder: str | Path | None = None, gpus: float = 0, **parameters: Any):
    """The executor the command line names: ``inline``; ``local`` (``jobs`` processes); ``ray`` (a local
    cluster of ``jobs`` CPUs, or ``address``); ``slurm`` (``cluster`` ``"slurm"`` or ``"local"``)."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    if address is not None and kind != "ray":
        raise ValueError("--address is for the Ray executor only")
    if kind == "inline":
        return InlineExecutor()
    if kind == "local":
        return LocalExecutor(jobs)
    if kind == "ray":
        return RayExecutor(workers=jobs, address=address, gpus=gpus)
    if gpus:
        parameters.setdefault("gpus_per_node", gpus)
    return SlurmExecutor(folder=folder, cluster=cluster, workers=jobs, **parameters)


# --------------------------------------------------------------------------------------------
# The sweep: a results cache whose missing entries become jobs
# --------------------------------------------------------------------------------------------


class SweepFailed(RuntimeError):
    """Some jobs failed twice; ``failures`` lists ``(label, error)``. Every other result is in the cache."""

    def __init__(self, failures: list[tuple[str, str]]):
        self.failures = failures
        super().__init__(f"{len(failures)} job(s) failed twice: " + "; ".join(f"{j}: {e}" for j, e in failures))


class SweepCache(ResultsCache):
    """A results cache that hands its missing entries to an executor instead of computing them here.

    ``report(line)`` receives the progress lines; :attr:`digests` maps each entry the recipe asked for
    (``name/key``) to the digest of its value, cached or computed.
    """

    def __init__(self, executor, root: str | Path | None = None, threads: int = 1,
                 report: Callable[[str], None] = print):
        super().__init__(root)
        self.executor, self.threads, self.report = executor, threads, report
        self.digests: dict[str, str] = {}
        self.entries: list[dict] = []  # every entry with its configuration, code and digest, for an export
        self.counts = dict(cached=0, ran=0, retried=0)
        self.pickles: list[Path] = []
        for stale in (self.root / ".sweep").glob("*.pkl*"):  # left by sweeps of this host that were killed
            m = _PICKLE.search(stale.name)
            if m and m["host"] == _host() and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
                stale.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the pickled computations this sweep wrote (its jobs are over)."""
        for path in self.pickles:
            path.unlink(missing_ok=True)
        self.pickles.clear()

    def fill(self, name: str, items: list[tuple[Any, Callable[[], Any]]], code: str) -> list:
        import cloudpickle

        values, missing = [], []
        for i, (config, compute) in enumerate(items):
            value = self.get(name, config, _ABSENT, code)
            values.append(value)
            if value is _ABSENT:
                missing.append(i)
        self.counts["cached"] += len(items) - len(missing)
        self.report(f"{name}: {len(items)} job(s), {len(items) - len(missing)} in the cache, "
                    f"{len(missing)} to run ({self.executor.name}, {self.executor.workers} worker(s), "
                    f"{self.threads} thread(s) each)")
        if missing:
            jobs = self._jobs(name, [items[i] for i in missing], code, cloudpickle)
            failed = self._run(jobs)
            if failed:
                self.report(f"{name}: {len(failed)} job(s) failed; running them once more")
                self.counts["retried"] += len(failed)
                failed = self._run([job for job, _ in failed])
            if failed:
                raise SweepFailed([(job.label, error) for job, error in failed])
            for i in missing:
                config = items[i][0]
                values[i] = self.get(name, config, _ABSENT, code)
                if values[i] is _ABSENT:
                    raise SweepFailed([(f"{name}/{self.key(name, config, code)[:10]}",
                                        "the job ended but its result is not in the cache (is the cache "
                                        "directory shared with the workers?)")])
        for (config, compute), value in zip(items, values):
            label, digest = f"{name}/{self.key(name, config, code)}", digest_of(value)
            self.digests[label] = digest
            function = inspect.unwrap(compute.func if isinstance(compute, functools.partial) else compute)
            module = getattr(function, "__module__", "") or ""
            self.entries.append(dict(name=name, config=_canonical(config), code=code, digest=digest,
                                     module=module.split(".", 1)[1] if module.startswith("genviz_lib.") else None))
        return values

    def _jobs(self, name: str, items: list, code: str, cloudpickle) -> list[Job]:
        """One :class:`Job` per item; the computation is pickled once per distinct function, beside the
        cache (``.sweep/<hash>-<host>-<pid>.pkl``), for every worker to read, and removed when the sweep ends."""
        folder = self.root / ".sweep"
        folder.mkdir(parents=True, exist_ok=True)
        jobs, written = [], {}
        for config, compute in items:
            with_config = (isinstance(compute, functools.partial) and len(compute.args) == 1
                           and compute.args[0] is config and not compute.keywords)
            function = compute.func if with_config else compute
            if id(function) not in written:
                blob = cloudpickle.dumps(function)
                path = folder / f"{hashlib.sha256(blob).hexdigest()[:24]}-{_host()}-{os.getpid()}.pkl"
                if not path.exists():
                    tmp = path.with_name(path.name + ".tmp")
                    tmp.write_bytes(blob)
                    os.replace(tmp, path)
                    self.pickles.append(path)
                written[id(function)] = str(path)
            jobs.append(Job(name, config, code, written[id(function)], with_config, str(self.root), self.threads))
        return jobs

    def _run(self, jobs: list[Job]) -> list[tuple[Job, str]]:
        failed = []

        def done(job: Job, record: dict | None, error: str | None) -> None:
            if error is not None:
                failed.append((job, error))
                self.report(f"  failed {job.label}: {error}")
            else:
                self.counts["ran"] += 1
                self.report(f"  done {job.label} in {record['seconds']:.1f} s ({record['host']}, pid {record['pid']})")

        self.executor.run_all(jobs, done)
        return failed

    def digest(self) -> str:
        """The SHA-256 of every entry the sweep touched (their names, keys and value digests, in key order)."""
        h = hashlib.sha256()
        for label in sorted(self.digests):
            h.update(f"{label} {self.digests[label]}\n".encode())
        return h.hexdigest()


_ABSENT = object()
_PICKLE = re.compile(r"^[0-9a-f]{24}-(?P<host>.+)-(?P<pid>\d+)\.pkl(\.tmp)?$")


@dataclasses.dataclass
class SweepPlan:
    """A sweep checked and ready to run (:func:`prepare`): nothing has been submitted yet."""

    recipe: str
    profile: str
    settings: Any
    executor: Any
    threads: int
    export: Path | None

    def run(self, cache_root: str | Path | None = None, report: Callable[[str], None] = print) -> str:
        """Run the recipe, the results going to the cache at ``cache_root`` (the default cache when ``None``);
        return the digest. Raises :class:`SweepFailed` when a job failed twice (after the others have
        finished and been cached)."""
        entry, executor = RECIPES[self.recipe], self.executor
        cache = SweepCache(executor, cache_root if cache_root is not None else get_cache().root, self.threads, report)
        start = time.perf_counter()
        report(f"sweep {self.recipe} ({self.profile}) on {executor.name}: cache {cache.root}")
        try:
            result = entry.call(self.settings, cache, get_profile(self.profile))
        finally:
            executor.close()
            cache.close()
        c = cache.counts
        report(f"{self.recipe}: {c['ran']} job(s) run, {c['cached']} read from the cache, {c['retried']} retried, "
               f"in {time.perf_counter() - start:.1f} s")
        digest = cache.digest()
        if self.export is not None:
            profile = get_profile(self.profile)
            about = dict(recipe=self.recipe, profile=self.profile, digest=digest, executor=executor.name,
                         workers=getattr(executor, "workers", 1), threads=self.threads, jobs_run=c["ran"],
                         jobs_cached=c["cached"], wall_seconds=round(time.perf_counter() - start, 1),
                         entries=cache.entries)
            tables = entry.exported(self.recipe, result, self.settings, profile)
            for path in _export(self.export, tables, self.settings, about):
                report(f"wrote {path}")
        return digest


def prepare(recipe: str, profile: str = "quick", executor=None, threads: int = 1, overrides: dict | None = None,
            export: str | Path | None = None) -> SweepPlan:
    """Check everything a sweep needs — the recipe, the profile, the settings with ``overrides`` applied, the
    thread count, the executor and its cluster (a Ray cluster is started or joined here) — and raise
    ``ValueError``, ``TypeError`` or ``RuntimeError`` before any job is submitted."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}: the recipes are {', '.join(sorted(RECIPES))}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    entry = RECIPES[recipe]
    if export is not None and entry.table is None and entry.tables is None:
        raise ValueError(f"recipe {recipe!r} has no table to export; these have one: "
                         f"{', '.join(sorted(n for n, r in RECIPES.items() if r.table or r.tables))}")
    settings = entry.settings(get_profile(profile), overrides or {})
    executor = executor or InlineExecutor()
    executor.check()
    return SweepPlan(recipe, profile, settings, executor, threads, None if export is None else Path(export))


def run_sweep(recipe: str, profile: str = "quick", executor=None, cache_root: str | Path | None = None,
              threads: int = 1, overrides: dict | None = None, report: Callable[[str], None] = print,
              export: str | Path | None = None) -> str:
    """Run the chapter recipe ``recipe`` of ``profile`` on ``executor`` (inline when ``None``) with every job
    at ``threads`` torch threads, the results going to the cache at ``cache_root`` (the default cache when
    ``None``); return the digest. ``overrides`` change fields of the recipe's settings. Everything is checked
    first (:func:`prepare`), before any job is submitted. Raises :class:`SweepFailed` when a job failed twice
    (after the others have finished and been cached).

    ``export`` (a folder, e.g. :func:`~genviz_lib.config.results_dir`) writes the recipe's table there as
    ``<recipe>-<profile>.csv``, with ``<recipe>-<profile>.json`` beside it (profile, settings, digest, executor,
    date): the files a book build shows as that profile's results (see the appendix on paper scale)."""
    return prepare(recipe, profile, executor, threads, overrides, export).run(cache_root, report)


def _export(folder: Path, tables: dict[str, list[dict]], settings, about: dict) -> list[Path]:
    """Write each table as ``folder/<stem>.csv`` with ``<stem>.json`` beside it: where it came from (``about``:
    recipe, profile, digest, executor, workers, threads, jobs, wall time), the settings, the code (the library's
    fingerprint and version, torch's version), the host and the date."""
    import datetime
    import json
    import platform

    import pandas as pd

    from .. import __version__
    from ..config import _canonical, publish_text
    from ..fingerprint import library_fingerprint

    provenance = dict(about, code_fingerprint=library_fingerprint(), genviz_lib=__version__,
                      torch=torch.__version__, python=platform.python_version(), host=socket.gethostname(),
                      written=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      settings=_canonical(settings))
    entries = provenance.pop("entries", None)
    paths = []
    for k, (stem, rows) in enumerate(tables.items()):
        path = folder / stem
        paths.append(publish_text(path.with_suffix(".csv"), pd.DataFrame(rows).to_csv(index=False)))
        about = dict(provenance, file=path.with_suffix(".csv").name, rows=len(rows))
        if entries is not None and k == 0:  # every cache entry's digest, once: what compare() checks a rerun against
            about["entries"] = entries
        paths.append(publish_text(path.with_suffix(".json"), json.dumps(about, indent=1) + "\n"))
    return paths


def compare(provenance: str | Path, cache_root: str | Path | None = None) -> dict[str, list[str]]:
    """Compare the results in a cache with those a published sweep recorded (the ``entries`` of the JSON that
    ``--export`` wrote beside its first table): ``same``, ``different`` and ``absent`` list the entries
    (``name/key``) whose value in the cache has the recorded digest, another digest, or is not in the cache.
    Each entry is looked up under this checkout's code (the fingerprint of the module that computes it), so the
    question is whether *this* code reproduces the published values: rerun any part of the sweep into a cache,
    then compare; each job is checked on its own, without rerunning the rest. ``code_changed`` lists the entries
    whose code differs from the one that computed the published value."""
    import json

    from ..fingerprint import library_fingerprint

    recorded = json.loads(Path(provenance).read_text()).get("entries")
    if not recorded or not isinstance(recorded, list):
        raise ValueError(f"{provenance} records no entries (it is not the first table of a sweep's export)")
    cache = ResultsCache(cache_root) if cache_root is not None else get_cache()
    out: dict[str, list[str]] = {"same": [], "different": [], "absent": [], "code_changed": []}
    for entry in recorded:
        code = library_fingerprint([entry["module"]])[:24] if entry.get("module") else entry["code"]
        label = f"{entry['name']}/{cache.key(entry['name'], _canonical(entry['config']), code)}"
        if code != entry["code"]:
            out["code_changed"].append(label)
        value = cache.get(entry["name"], entry["config"], _ABSENT, code)
        out["absent" if value is _ABSENT else "same" if digest_of(value) == entry["digest"] else "different"].append(label)
    return out
