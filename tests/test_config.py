import os
import warnings
from pathlib import Path

import pytest
import torch

from genviz_lib import __version__, config


def test_profiles_pick_values():
    assert config.get_profile("quick").pick(quick=1, book=2, full=3) == 1
    assert config.get_profile("book").pick(quick=1, book=2, full=3) == 2
    assert config.get_profile("full").pick(quick=1, book=2, full=3) == 3
    assert config.get_profile("full").pick(quick=1, book=2) == 2  # full falls back to book
    assert config.get_profile(" Quick ").name == "quick"


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'fast': choose one of 'quick', 'book', 'full'"):
        config.get_profile("fast")


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("GENVIZ_PROFILE", "quick")
    assert config.get_profile().name == "quick"
    monkeypatch.delenv("GENVIZ_PROFILE")
    assert config.get_profile().name == "book"


def test_device_choice(monkeypatch):
    monkeypatch.delenv("GENVIZ_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if config._mps_available() else "cpu")
    assert config.get_device().type == expected
    assert config.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("GENVIZ_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        config.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            config.get_device("cuda")


def test_seed_everything_is_deterministic():
    g1 = config.seed_everything(7)
    a = torch.randn(3), torch.randn(3, generator=g1)
    g2 = config.seed_everything(7)
    b = torch.randn(3), torch.randn(3, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="non-negative integer"):
        config.seed_everything(-1)


def test_cache_key_depends_on_config_and_version(tmp_path):
    cache = config.ResultsCache(tmp_path)
    assert cache.key("x", {"a": 1, "b": [1, 2]}) == cache.key("x", {"b": (1, 2), "a": 1})
    assert cache.key("x", {"a": 1}) != cache.key("x", {"a": 2})
    assert cache.key("x", {"a": 1}) != config.ResultsCache(tmp_path, version=__version__ + "+1").key("x", {"a": 1})
    with pytest.raises(TypeError, match="cannot use a Tensor"):
        cache.key("x", {"a": torch.zeros(2)})


def test_cache_computes_once(tmp_path):
    cache = config.ResultsCache(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or {"w": torch.arange(3)}
    first = cache.cached("exp", {"n": 3}, compute)
    second = cache.cached("exp", {"n": 3}, compute)
    assert len(calls) == 1
    assert torch.equal(first["w"], second["w"])


def test_corrupted_entry_is_recomputed(tmp_path):
    cache = config.ResultsCache(tmp_path)
    compute = lambda: 42
    code = config.code_fingerprint(compute)
    cache.put("exp", {"n": 1}, 41, code)
    path = cache.path("exp", {"n": 1}, code)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # one flipped bit inside the stored value
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.cached("exp", {"n": 1}, compute) == 42
    assert [str(w.message) for w in caught] == [
        f"cache entry {path} could not be read (it does not match its checksum: damaged on disk); recomputing it"]
    assert cache.get("exp", {"n": 1}, code=code) == 42
    path.write_bytes(b"not a pickle")  # an entry of an older format, or garbage
    with pytest.warns(UserWarning, match="not a genviz cache entry"):
        assert cache.get("exp", {"n": 1}, code=code) is None


def test_interrupted_map_keeps_finished_items(tmp_path):
    cache = config.ResultsCache(tmp_path)
    done, stop_at = [], [3]

    def work(c):
        if c in stop_at:
            raise KeyboardInterrupt  # the run is stopped half-way
        done.append(c)
        return c * c

    with pytest.raises(KeyboardInterrupt):
        cache.map("sq", [1, 2, 3, 4], work)
    code = config.code_fingerprint(work)
    assert [cache.get("sq", c, code=code) for c in (1, 2, 3)] == [1, 4, None]
    assert not list(tmp_path.rglob("*.tmp*"))  # no half-written files left behind
    done.clear()
    stop_at.clear()
    assert cache.map("sq", [1, 2, 3, 4], work) == [1, 4, 9, 16]  # 1 and 2 from the cache, 3 and 4 computed
    assert done == [3, 4]


def test_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    cache = config.ResultsCache(tmp_path)

    def broken_replace(src, dst):  # the entry was written to its temporary file, then the disk fails
        assert Path(src).stat().st_size > 0
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.put("exp", {"n": 2}, 5)
    assert not cache.path("exp", {"n": 2}).exists()
    assert not list(tmp_path.rglob("*.tmp*"))


def test_temporary_files_of_killed_writers_are_swept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "exp"
    folder.mkdir()
    here = config._host()
    stale = folder / f"abc.tmp-{here}-{int(dead.stdout)}"  # what a SIGKILL during a write leaves
    live = folder / f"def.tmp-{here}-{os.getppid()}"  # a writer that is still running
    elsewhere = folder / f"ghi.tmp-othernode-{int(dead.stdout)}"  # another machine's writer: not ours to judge
    for f in (stale, live, elsewhere):
        f.write_bytes(b"x")
    cache = config.ResultsCache(tmp_path)  # opening the cache sweeps
    assert not stale.exists() and live.exists() and elsewhere.exists()
    stale.write_bytes(b"x")
    assert cache.clear() == 0 and not stale.exists() and live.exists() and elsewhere.exists()


def test_cache_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("GENVIZ_NO_CACHE", "1")
    cache = config.get_cache(tmp_path)
    cache.cached("exp", {}, lambda: 1)
    assert not list(tmp_path.rglob("*.pt"))


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("on", True), ("Yes", True),
                                             ("0", False), ("off", False), ("", False)])
def test_yes_no_switches(monkeypatch, value, expected):
    monkeypatch.setenv("GENVIZ_NO_CACHE", value)
    assert config.env_flag("GENVIZ_NO_CACHE") is expected
    assert config.get_cache().enabled is not expected


def test_a_mistyped_switch_is_an_error(monkeypatch):
    monkeypatch.setenv("GENVIZ_DOWNLOAD", "sure")
    with pytest.raises(ValueError, match=r"GENVIZ_DOWNLOAD='sure' is not a yes/no value"):
        config.downloads_allowed()


def test_downloads_are_allowed_in_colab_and_binder_unless_switched_off(monkeypatch):
    import sys
    import types

    assert not config.downloads_allowed()  # a build or test machine: never the network unless told
    monkeypatch.setenv("BINDER_SERVICE_HOST", "10.0.0.1")
    assert config.on_binder() and config.downloads_allowed()
    monkeypatch.delenv("BINDER_SERVICE_HOST")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert config.in_colab() and config.downloads_allowed()
    monkeypatch.setenv("GENVIZ_DOWNLOAD", "0")
    assert not config.downloads_allowed()


def test_data_root_of_a_pip_install_is_in_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("GENVIZ_DATA_DIR", raising=False)
    monkeypatch.delenv("GENVIZ_CACHE_DIR", raising=False)
    monkeypatch.setattr(config, "_checkout_data_dir", lambda: None)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.data_root() == tmp_path / ".cache" / "genviz-data"
    assert config.default_cache_dir() == tmp_path / ".cache" / "genviz"
    monkeypatch.setenv("GENVIZ_DATA_DIR", str(tmp_path / "d"))
    assert config.data_root() == tmp_path / "d"


def test_publish_text_replaces_whole_files_readable_by_all_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    path = config.publish_text(tmp_path / "results" / "x-book.csv", "a,b\r\n1,2\r\n")
    assert path.read_bytes() == b"a,b\r\n1,2\r\n" and path.stat().st_mode & 0o777 == 0o644
    monkeypatch.setattr(config.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        config.publish_text(path, "new")
    assert path.read_text() == "a,b\n1,2\n" and [p.name for p in path.parent.iterdir()] == ["x-book.csv"]
