"""Sweeps (genviz_lib.sweep): the same results and digest on every executor, faults, resume, and the command line."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest
import torch

from genviz_lib import config, sweep, train
from genviz_lib.sweep import __main__ as sweep_main
from genviz_lib.experiments import huang2020
from genviz_lib.sweep import __main__ as cli

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the flaky recipe below runs in worker processes
ROOT = Path(__file__).resolve().parents[1]
QUICK = huang2020.PoisonSweep.for_profile("quick")


@pytest.fixture(scope="module")
def inline_digest(tmp_path_factory):
    """The quick poison sweep run in this process: the digest every executor must give."""
    root = tmp_path_factory.mktemp("inline")
    return sweep.run_sweep("poison_sweep", "quick", sweep.InlineExecutor(), root, report=lambda line: None), root


def _entries(root, name):
    return sorted((Path(root) / name).glob("*.pt"))


def test_a_local_ray_cluster_gives_the_inline_digest_and_the_chapter_then_only_reads(inline_digest, tmp_path,
                                                                                    monkeypatch):
    lines = []
    digest = sweep.run_sweep("poison_sweep", "quick", sweep.RayExecutor(workers=2), tmp_path, report=lines.append)
    assert digest == inline_digest[0]
    assert sum(" done swiss-roll-poison-sweep/" in line for line in lines) == QUICK.seeds  # a job per seed
    assert len({line.split("pid ")[1] for line in lines if " done " in line}) == 2  # on two workers
    # the chapter's call now reads every net from the cache: training would fail
    monkeypatch.setattr(train, "train_ensemble", lambda *a, **k: pytest.fail("the chapter trained"))
    rows = huang2020.poison_sweep(QUICK, config.ResultsCache(tmp_path), progress=False).records()
    assert len(rows) == QUICK.seeds * len(QUICK.betas)
    inline_rows = huang2020.poison_sweep(QUICK, config.ResultsCache(inline_digest[1]), progress=False).records()
    assert rows == inline_rows


@pytest.mark.parametrize("executor", [
    lambda tmp: sweep.SlurmExecutor(folder=tmp / "submitit", cluster="local", workers=2),
    lambda tmp: sweep.LocalExecutor(workers=2),
], ids=["submitit-local", "processes"])
def test_submitit_and_process_pools_give_the_inline_digest(inline_digest, tmp_path, executor):
    digest = sweep.run_sweep("poison_sweep", "quick", executor(tmp_path), tmp_path / "cache",
                             report=lambda line: None)
    assert digest == inline_digest[0]
    assert len(_entries(tmp_path / "cache", "swiss-roll-poison-sweep")) == QUICK.seeds


def test_a_sweep_in_the_cache_runs_nothing_and_gives_the_same_digest(inline_digest):
    lines = []
    assert sweep.run_sweep("poison_sweep", "quick", None, inline_digest[1], report=lines.append) == inline_digest[0]
    assert any("2 in the cache, 0 to run" in line for line in lines) and not any(" done " in line for line in lines)


def test_the_digest_depends_on_the_threads_setting_only_through_the_results(inline_digest, tmp_path):
    """A job at 2 threads may round differently, but its entry is the chapter's: same name, same key."""
    sweep.run_sweep("poison_sweep", "quick", None, tmp_path, threads=2, report=lambda line: None)
    assert [p.name for p in _entries(tmp_path, "swiss-roll-poison-sweep")] == \
        [p.name for p in _entries(inline_digest[1], "swiss-roll-poison-sweep")]


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def _flaky(marks: str):
    """A recipe of three jobs: 1 succeeds, 2 always fails, 3 fails on its first try only (it leaves a mark)."""
    def compute(job):
        if job == 2:
            raise ArithmeticError("job 2 cannot be computed")
        if job == 3:
            mark = Path(marks) / "tried-3"
            if not mark.exists():
                mark.write_text("once")
                raise OSError("a flaky file system")
        return torch.full((3,), float(job))

    return sweep.Recipe("test", "three jobs, one failing", lambda p: huang2020.PoisonSweep.for_profile(p),
                        lambda s, cache, p: cache.map("test-flaky", [1, 2, 3], compute))


@pytest.mark.parametrize("executor", [sweep.InlineExecutor, lambda: sweep.LocalExecutor(workers=2)],
                         ids=["inline", "processes"])
def test_a_failing_job_is_retried_once_then_reported_and_the_others_are_kept(tmp_path, monkeypatch, executor):
    monkeypatch.setitem(sweep.RECIPES, "flaky", _flaky(str(tmp_path)))
    lines = []
    with pytest.raises(sweep.SweepFailed) as failure:
        sweep.run_sweep("flaky", "quick", executor(), tmp_path / "cache", report=lines.append)
    [(label, error)] = failure.value.failures
    assert label.startswith("test-flaky/") and error == "ArithmeticError: job 2 cannot be computed"
    assert any("2 job(s) failed; running them once more" in line for line in lines)
    assert len(_entries(tmp_path / "cache", "test-flaky")) == 2  # jobs 1 and 3 are kept
    assert (tmp_path / "tried-3").exists()
    # started again, the sweep runs job 2 alone (and it fails again)
    lines.clear()
    with pytest.raises(sweep.SweepFailed):
        sweep.run_sweep("flaky", "quick", executor(), tmp_path / "cache", report=lines.append)
    assert any("3 job(s), 2 in the cache, 1 to run" in line for line in lines)


def test_the_command_line_reports_a_failed_job_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sweep.RECIPES, "flaky", _flaky(str(tmp_path)))
    assert cli.main(["flaky", "--cache", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 1 job(s) failed twice" in out and "ArithmeticError: job 2 cannot be computed" in out
    assert "digest:" not in out


class _Spy(sweep.InlineExecutor):
    submitted = 0

    def run_all(self, jobs, done):
        _Spy.submitted += len(jobs)
        super().run_all(jobs, done)


@pytest.mark.parametrize("call, message", [
    (lambda ex, root: sweep.run_sweep("nosuch", "quick", ex, root), "unknown recipe 'nosuch'"),
    (lambda ex, root: sweep.run_sweep("poison_sweep", "huge", ex, root), "unknown profile 'huge'"),
    (lambda ex, root: sweep.run_sweep("poison_sweep", "quick", ex, root, overrides=dict(seeds=0)),
     "need at least one seed"),
    (lambda ex, root: sweep.run_sweep("poison_sweep", "quick", ex, root, overrides=dict(sedes=3)),
     "PoisonSweep has no field sedes"),
    (lambda ex, root: sweep.run_sweep("poison_sweep", "quick", ex, root, threads=0), "threads must be a positive"),
    (lambda ex, root: sweep.run_sweep("poison_sweep", "quick", sweep.LocalExecutor(0), root), "workers must be"),
    (lambda ex, root: sweep.run_sweep("poison_sweep", "quick", sweep.SlurmExecutor(cluster="slurm"), root),
     "no SLURM here"),
    (lambda ex, root: sweep.make_executor("local", address="auto"), "--address is for the Ray executor only"),
    (lambda ex, root: sweep.make_executor("dask"), "unknown executor 'dask'"),
])
def test_an_invalid_configuration_is_refused_before_anything_is_submitted(tmp_path, monkeypatch, call, message):
    monkeypatch.setenv("PATH", os.defpath)  # no sbatch on it
    _Spy.submitted = 0
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        call(_Spy(), tmp_path)
    assert _Spy.submitted == 0 and not list(tmp_path.rglob("*.pt"))


def test_the_command_line_refuses_a_bad_setting_with_exit_2(tmp_path, capsys):
    assert cli.main(["poison_sweep", "--set", "seeds=0", "--cache", str(tmp_path)]) == 2
    assert "need at least one seed" in capsys.readouterr().err and not list(tmp_path.rglob("*.pt"))
    assert cli.main(["poison_sweep", "--set", "seeds", "--cache", str(tmp_path)]) == 2


def test_a_killed_sweep_started_again_skips_what_is_cached_and_ends_with_the_same_digest(tmp_path):
    command = [sys.executable, "-m", "genviz_lib.sweep", "poison_sweep", "--set", "seeds=4", "--set", "steps=600",
               "--cache", str(tmp_path / "cache")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines = []
    for line in first.stdout:  # kill it as soon as its first job is done
        lines.append(line)
        if " done " in line:
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, "".join(lines)
    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    [stage] = [line for line in again.stdout.splitlines() if line.startswith("swiss-roll-poison-sweep:")]
    cached = int(stage.split(", ")[1].split()[0])
    assert 1 <= cached < 4 and again.stdout.count(" done ") == 4 - cached
    assert not list((tmp_path / "cache").rglob("*.tmp-*"))  # the killed job's temporary file is gone
    assert not list((tmp_path / "cache" / ".sweep").iterdir())  # and so are both runs' pickled computations
    digest = again.stdout.strip().splitlines()[-1]
    expected = sweep.run_sweep("poison_sweep", "quick", None, tmp_path / "fresh", report=lambda line: None,
                               overrides=dict(seeds=4, steps=600))
    assert digest == f"digest: {expected}"


def test_the_command_line_lists_the_recipes(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("attraction") and "poison_sweep" in out and len(out.splitlines()) == len(sweep.RECIPES)


# --------------------------------------------------------------------------------------------
# The digest, and seeded computations
# --------------------------------------------------------------------------------------------


def test_the_digest_sees_every_bit_of_a_result_and_no_timing():
    value = dict(w=torch.tensor([1.0, 2.0]), history=[0.5, 0.25], seconds=3.2, name="net")
    same = dict(w=torch.tensor([1.0, 2.0]), history=[0.5, 0.25], seconds=9.9, name="net")
    assert sweep.digest_of(value) == sweep.digest_of(same)  # only the timing differs
    nudged = dict(same, w=torch.tensor([1.0, float(torch.nextafter(torch.tensor(2.0), torch.tensor(3.0)))]))
    assert sweep.digest_of(nudged) != sweep.digest_of(value)
    assert sweep.digest_of([1.0]) != sweep.digest_of([1]) != sweep.digest_of((1.0, 1.0))
    with pytest.raises(TypeError, match="cannot digest a object"):
        sweep.digest_of(object())


def test_a_cached_computation_runs_under_its_own_seed_and_leaves_the_callers_random_state(tmp_path):
    cache = config.ResultsCache(tmp_path)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = cache.cached("draw", dict(n=3), lambda: torch.rand(3))
    assert torch.equal(torch.get_rng_state(), before)  # as if nothing had been drawn
    torch.rand(100)  # another state of the caller's generator: the same value comes out
    second = config.ResultsCache(tmp_path / "other").cached("draw", dict(n=3), lambda: torch.rand(3))
    assert torch.equal(first, second)
    torch.manual_seed(config.job_seed("draw", dict(n=3)))
    assert torch.equal(first, torch.rand(3))
    other = config.ResultsCache(tmp_path / "third").cached("draw", dict(n=4), lambda: torch.rand(3))
    assert not torch.equal(first, other)


def test_every_recipe_of_the_sweep_has_settings_in_every_profile():
    for name, recipe in sweep.RECIPES.items():
        for profile in ("quick", "book"):
            assert recipe.settings(config.get_profile(profile), {}) is not None, name


def test_a_job_is_small_and_its_computation_is_pickled_once_beside_the_cache(tmp_path):
    jobs = []

    class Collect(sweep.InlineExecutor):
        def run_all(self, todo, done):
            jobs.extend(todo)
            super().run_all(todo, done)

    sweep.run_sweep("poison_sweep", "quick", Collect(), tmp_path, report=lambda line: None)
    assert len(jobs) == QUICK.seeds and len({job.function for job in jobs}) == 1
    assert Path(jobs[0].function).parent == tmp_path / ".sweep"
    assert len(cloudpickle.dumps(jobs[0])) < 5000  # the data travel once, in the pickled computation
    assert not Path(jobs[0].function).exists()  # removed when the sweep ended
    assert jobs[0].key == config.ResultsCache(tmp_path).key(jobs[0].name, jobs[0].config, jobs[0].code)


def test_export_writes_the_recipes_table_and_where_it_came_from(inline_digest, tmp_path):
    import json

    import pandas as pd

    digest = sweep.run_sweep("poison_sweep", "quick", None, inline_digest[1], report=lambda line: None,
                             export=tmp_path)
    table = pd.read_csv(tmp_path / "poison_sweep-quick.csv")
    rows = huang2020.poison_sweep(QUICK, config.ResultsCache(inline_digest[1]), progress=False).records()
    assert len(table) == len(rows) and list(table.columns) == list(rows[0])
    assert table["test_acc"].tolist() == pytest.approx([r["test_acc"] for r in rows], rel=1e-12)
    about = json.loads((tmp_path / "poison_sweep-quick.json").read_text())
    assert about["digest"] == digest == inline_digest[0] and about["profile"] == "quick" and about["rows"] == len(rows)
    assert about["settings"]["seeds"] == QUICK.seeds
    from genviz_lib.fingerprint import library_fingerprint
    assert about["code_fingerprint"] == library_fingerprint() and about["threads"] == 1 and about["workers"] == 1
    assert about["wall_seconds"] >= 0 and about["jobs_run"] + about["jobs_cached"] >= 1 and about["host"]
    # a rerun is checked entry by entry against the export: equal values pass, a changed one is named
    found = sweep.compare(tmp_path / "poison_sweep-quick.json", inline_digest[1])
    assert len(found["same"]) == len(about["entries"]) >= 1 and not found["different"] and not found["absent"]
    assert not found["code_changed"]
    name, _, key = found["same"][0].rpartition("/")
    cache = config.ResultsCache(tmp_path / "other")
    cache.put(name, None, {"changed": 1})
    (cache.root / name / next(p.name for p in (cache.root / name).iterdir())).rename(cache.root / name / f"{key}.pt")
    assert sweep.compare(tmp_path / "poison_sweep-quick.json", cache.root)["different"] == [found["same"][0]]
    assert sweep_main.main(["--compare", str(tmp_path / "poison_sweep-quick.json"), "--cache",
                            str(inline_digest[1])]) == 0
    assert sweep_main.main(["--compare", str(tmp_path / "poison_sweep-quick.json"), "--cache",
                            str(cache.root)]) == 1
    with pytest.raises(ValueError, match="recipe 'puzzle' has no table to export"):
        sweep.run_sweep("puzzle", "quick", _Spy(), tmp_path / "none", export=tmp_path)
    assert not (tmp_path / "none").exists()


def test_a_sweep_removes_the_pickles_that_killed_sweeps_of_this_host_left(tmp_path):
    from genviz_lib.config import _host

    folder = tmp_path / ".sweep"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that is no longer alive
    stale = [folder / f"{'a' * 24}-{_host()}-{dead.pid}.pkl", folder / f"{'b' * 24}-{_host()}-{dead.pid}.pkl.tmp"]
    alive = folder / f"{'c' * 24}-{_host()}-{os.getpid()}.pkl"  # a sweep still running (this process)
    other = folder / f"{'d' * 24}-another-host-{dead.pid}.pkl"  # a pid means nothing on another host
    for path in [*stale, alive, other]:
        path.write_bytes(b"x")
    sweep.SweepCache(sweep.InlineExecutor(), tmp_path, report=lambda line: None)
    assert sorted(p.name for p in folder.iterdir()) == sorted([alive.name, other.name])
