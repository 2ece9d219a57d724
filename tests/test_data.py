import gzip
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from genviz_lib import data


def test_swiss_roll_shapes_balance_and_determinism():
    s = data.swiss_roll(n_train=200, n_test=100, n_poison=50, seed=3)
    assert s.train.X.shape == (200, 2) and s.test.X.shape == (100, 2) and s.poison.X.shape == (50, 2)
    assert s.train.X.dtype == torch.float32 and s.train.y.dtype == torch.int64
    for split, n in ((s.train, 200), (s.test, 100), (s.poison, 50)):
        assert torch.bincount(split.y).tolist() == [n // 2, n // 2]
    again = data.swiss_roll(n_train=200, n_test=100, n_poison=50, seed=3)
    assert torch.equal(s.train.X, again.train.X) and torch.equal(s.poison.y, again.poison.y)
    other = data.swiss_roll(n_train=200, n_test=100, n_poison=50, seed=4)
    assert not torch.equal(s.train.X, other.train.X)
    assert data.swiss_roll(n_poison=0).poison is None


def test_twospirals_follows_the_original_formula():
    X, y = data.twospirals(500, noise=0.0, rng=0)
    a = np.sqrt(np.random.default_rng(0).random(500)) * 600 * 2 * np.pi / 360
    np.testing.assert_allclose(X[:500, 0], -1.5 * a * np.cos(a), atol=1e-12)
    np.testing.assert_allclose(X[:500, 1], 1.5 * a * np.sin(a), atol=1e-12)
    np.testing.assert_allclose(X[500:], -X[:500])  # class 1 is the point reflection of class 0
    assert (y[:500] == 0).all() and (y[500:] == 1).all()
    radius = np.linalg.norm(X, axis=1)
    assert radius.max() <= 1.5 * 600 * np.pi / 180 + 1e-9  # |(x, y)| = 1.5·a ≤ 1.5·(10π/3)


def test_swiss_roll_rejects_odd_sizes():
    with pytest.raises(ValueError, match="n_train must be even"):
        data.swiss_roll(n_train=201)


def test_minefield_spiral_radius():
    s = data.minefield_spiral(n_train=400, noise=0.0, seed=1)
    r = s.train.X.norm(dim=1)
    assert torch.bincount(s.train.y).tolist() == [200, 200]
    assert r.max() <= 5 * np.sqrt(3 * np.pi) + 1e-4


def test_concentric_rings_layout():
    rings = data.concentric_rings(gap=0.1)
    r = rings.X.norm(dim=1)
    inner, outer = rings.y == 0, rings.y == 1
    assert int(inner.sum()) == 40 and int(outer.sum()) == 90
    torch.testing.assert_close(r[inner], torch.full((40,), 0.4))
    assert sorted(set(np.round(r[outer].numpy(), 5))) == [0.5, 0.95]
    with pytest.raises(ValueError, match="gap must lie in"):
        data.concentric_rings(gap=0.6)


def test_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    floats = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    for name, arr in (("img.idx3.gz", images), ("f.idx", floats)):
        back = data.read_idx(data.write_idx(tmp_path / name, arr))
        assert back.shape == arr.shape and back.dtype == arr.dtype
        np.testing.assert_array_equal(back, arr)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad.gz")
    raw = (tmp_path / "img.idx3.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(gzip.compress(gzip.decompress(raw)[:-10]))
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "cut.gz")


def _fake_fashion(folder, n_train=60, n_test=30):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images_file, labels_file = data.FASHION_MNIST_FILES[split]
        data.write_idx(folder / images_file, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        data.write_idx(folder / labels_file, np.arange(n, dtype=np.uint8) % 10)
    return folder


def test_fashion_mnist_subsets(tmp_path):
    root = _fake_fashion(tmp_path)
    s = data.load_fashion_mnist(n_train=20, n_test=10, n_poison=20, downsample=2, root=root, seed=0)
    assert s.train.X.shape == (20, 1, 14, 14) and s.test.X.shape == (10, 1, 14, 14)
    assert torch.bincount(s.train.y, minlength=10).tolist() == [2] * 10
    assert 0.0 <= float(s.train.X.min()) and float(s.train.X.max()) <= 1.0
    # the poison pool is disjoint from the training subset
    train_rows = {tuple(x.flatten().tolist()) for x in s.train.X}
    assert not any(tuple(x.flatten().tolist()) in train_rows for x in s.poison.X)
    with pytest.raises(ValueError, match="asked for 2 examples of class 0 but only 0 are available"):
        data.load_fashion_mnist(n_train=60, n_test=10, n_poison=20, root=root)


def test_downsample_averages_blocks():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert data.downsample2x(x)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    with pytest.raises(ValueError, match="even H and W"):
        data.downsample2x(torch.zeros(1, 1, 3, 4))


def _fake_md5s(folder):
    """The MD5 table for the fake files: of their decompressed bytes, as FASHION_MNIST_MD5 is."""
    return {f: hashlib.md5(gzip.decompress((folder / f).read_bytes())).hexdigest() for f in data.FASHION_MNIST_MD5}


@pytest.fixture
def no_system_fashion(tmp_path, monkeypatch):
    """No Debian copy and an empty data root: the machine has no Fashion-MNIST."""
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("GENVIZ_DATA_DIR", str(tmp_path / "data-root"))


def test_missing_fashion_mnist_names_every_way_to_get_it(no_system_fashion, tmp_path):
    with pytest.raises(data.DataUnavailable) as err:
        data.load_fashion_mnist()
    message = str(err.value)
    assert message.startswith(f"Fashion-MNIST was not found (looked in {tmp_path / 'nowhere'}, "
                              f"{tmp_path / 'data-root' / 'fashion-mnist'}) and downloads are off.")
    for way in ("sudo apt-get install dataset-fashion-mnist", "set GENVIZ_FASHION_MNIST to a folder",
                "set GENVIZ_DOWNLOAD=1", "GENVIZ_FASHION_MNIST_URL"):
        assert way in message
    assert isinstance(err.value, FileNotFoundError)
    assert not (tmp_path / "data-root").exists()


def test_the_published_md5s_match_debians_copy():
    folder = data.FASHION_MNIST_SYSTEM_DIR
    if not all((folder / f).is_file() for f in data.FASHION_MNIST_MD5):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    assert _fake_md5s(folder) == data.FASHION_MNIST_MD5  # Zalando's values hold for the recompressed files


def test_fashion_mnist_downloads_into_the_named_folder(no_system_fashion, tmp_path, monkeypatch, http_server):
    _fake_fashion(http_server.folder)
    monkeypatch.setattr(data, "FASHION_MNIST_MD5", _fake_md5s(http_server.folder))
    target = tmp_path / "empty"
    monkeypatch.setenv("GENVIZ_FASHION_MNIST", str(target))
    monkeypatch.setenv("GENVIZ_FASHION_MNIST_URL", http_server.url)
    monkeypatch.setenv("GENVIZ_DOWNLOAD", "1")
    images, labels = data.fashion_mnist("test")
    assert images.shape == (30, 28, 28) and labels[:3].tolist() == [0, 1, 2]
    assert sorted(p.name for p in target.iterdir()) == sorted(data.FASHION_MNIST_MD5)  # no .part files left
    assert sorted(http_server.requests) == sorted(data.FASHION_MNIST_MD5)
    data.fashion_mnist("train")  # found now: nothing is fetched again
    assert len(http_server.requests) == 4


def test_the_named_folder_is_the_only_one_looked_in(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", _fake_fashion(tmp_path / "system"))
    assert data.find_fashion_mnist() == tmp_path / "system"
    monkeypatch.setenv("GENVIZ_FASHION_MNIST", str(tmp_path / "mine"))
    with pytest.raises(data.DataUnavailable, match=r"looked in [^,]*mine\) and downloads are off"):
        data.find_fashion_mnist()


def test_offline_download_fails_at_once_with_the_ways_to_get_the_data(no_system_fashion, tmp_path, monkeypatch,
                                                                    closed_port):
    monkeypatch.setenv("GENVIZ_FASHION_MNIST", str(tmp_path / "a" / "b"))
    monkeypatch.setenv("GENVIZ_FASHION_MNIST_URL", closed_port)
    monkeypatch.setenv("GENVIZ_DOWNLOAD", "yes")
    with pytest.raises(data.DataUnavailable) as err:
        data.require("fashion-mnist")
    message = str(err.value)
    assert f"could not download {closed_port}train-images-idx3-ubyte.gz (" in message
    assert "Connection refused" in message and "sudo apt-get install dataset-fashion-mnist" in message
    assert "once online, run again" in message and "set GENVIZ_DOWNLOAD=1" not in message
    assert not (tmp_path / "a").exists()  # no empty folder left behind


def test_a_corrupt_download_is_retried_and_never_kept(no_system_fashion, tmp_path, monkeypatch, http_server):
    _fake_fashion(http_server.folder)
    monkeypatch.setattr(data, "FASHION_MNIST_MD5", _fake_md5s(http_server.folder))
    monkeypatch.setenv("GENVIZ_FASHION_MNIST_URL", http_server.url)
    target = tmp_path / "downloads"
    name = "t10k-images-idx3-ubyte.gz"
    http_server.corrupt[name] = 1  # the first response is spoilt, the second is good
    data.find_fashion_mnist(root=target, download=True)
    assert http_server.requests.count(name) == 2
    assert _fake_md5s(target) == data.FASHION_MNIST_MD5

    http_server.corrupt[name] = 5  # spoilt every time: reported, nothing kept
    (target / name).unlink()
    with pytest.raises(data.DataUnavailable, match=r"3 attempts, the last one had MD5 unreadable|3 attempts, "
                                                   r"the last one had MD5 [0-9a-f]{32} where"):
        data.find_fashion_mnist(root=target, download=True)
    assert sorted(p.name for p in target.iterdir()) == sorted(set(data.FASHION_MNIST_MD5) - {name})


def test_a_truncated_download_is_retried_and_reported(tmp_path, monkeypatch, http_server):
    payload = bytes(range(256)) * 4000
    (http_server.folder / "blob.bin").write_bytes(payload)
    http_server.truncate["blob.bin"] = 1
    dest = tmp_path / "out" / "blob.bin"
    data._download(http_server.url + "blob.bin", dest, hashlib.md5(payload).hexdigest())
    assert dest.read_bytes() == payload and http_server.requests.count("blob.bin") == 2
    dest.unlink()
    http_server.truncate["blob.bin"] = 3
    with pytest.raises(data.DataUnavailable, match="3 attempts, the last one (got 512,000 of 1,024,000 bytes"
                                                   "|was cut off)"):
        data._download(http_server.url + "blob.bin", dest, None)
    assert list(dest.parent.iterdir()) == []  # the folder was there before: kept, and empty


def test_require_checks_names_before_any_work():
    with pytest.raises(ValueError, match=r"unknown data set\(s\) \['mnist'\]"):
        data.require("fashion-mnist", "mnist")


def test_cifar10_reads_torchvision_layout(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, 20))}
        with open(folder / name, "wb") as f:
            pickle.dump(batches[name], f)
    images, labels = data.cifar10("train", root=tmp_path)
    assert images.shape == (100, 3, 32, 32) and labels.shape == (100,)
    np.testing.assert_array_equal(images[20].reshape(-1), batches["data_batch_2"][b"data"][0])
    s = data.load_cifar10(n_train=50, n_test=10, root=tmp_path)
    assert s.train.X.shape == (50, 3, 32, 32)


def test_cifar10_download_and_extract(tmp_path, monkeypatch, http_server):
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(src / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 4]}, f)
    archive = http_server.folder / data.CIFAR10_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    monkeypatch.setenv("GENVIZ_CIFAR10_URL", http_server.url)
    monkeypatch.setenv("GENVIZ_CIFAR10", str(tmp_path / "root"))
    with pytest.raises(data.DataUnavailable, match="CIFAR-10 was not found .* and downloads are off"):
        data.cifar10("test")
    monkeypatch.setattr(data, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(data.DataUnavailable, match="had MD5 .* where 0{32} was expected"):
        data.cifar10("test", download=True)
    assert not (tmp_path / "root").exists()
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setenv("GENVIZ_DOWNLOAD", "1")
    images, labels = data.cifar10("test")
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [3, 4]
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["cifar-10-batches-py", data.CIFAR10_ARCHIVE]


def test_svhn_reads_mat_files_with_extra(svhn_root):
    images, labels = data.svhn("extra", root=svhn_root)
    assert images.shape == (60, 3, 32, 32)
    assert labels[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # stored as 1..10, with 10 for the digit 0
    s = data.load_svhn(n_train=20, n_test=10, n_poison=20, root=svhn_root)
    assert len(s.poison) == 20 and s.train.X.shape == (20, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.svhn("train", root=svhn_root / "empty")


def test_svhn_download_checks_md5(tmp_path, monkeypatch, http_server):
    from scipy.io import savemat

    savemat(http_server.folder / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((2, 1))})
    monkeypatch.setenv("GENVIZ_SVHN_URL", http_server.url)
    monkeypatch.setitem(data.SVHN_MD5, "test", "0" * 32)
    with pytest.raises(data.DataUnavailable, match="SVHN test was not found .*, and could not download .*had MD5"):
        data.svhn("test", root=tmp_path / "root", download=True)
    assert not (tmp_path / "root").exists()
    monkeypatch.setitem(data.SVHN_MD5, "test", hashlib.md5((http_server.folder / "test_32x32.mat").read_bytes()).hexdigest())
    monkeypatch.setenv("GENVIZ_SVHN", str(tmp_path / "svhn"))
    images, labels = data.svhn("test", download=True)
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [1, 1]


def test_corrupt_labels_fraction_and_determinism():
    y = torch.arange(1000) % 10
    new, mask = data.corrupt_labels(y, 0.3, 10, seed=1)
    assert int(mask.sum()) == 300
    assert torch.equal(new[~mask], y[~mask])
    changed = (new[mask] != y[mask]).float().mean().item()
    assert 0.8 < changed < 0.97  # about 9/10 of random labels differ from the truth
    again, _ = data.corrupt_labels(y, 0.3, 10, seed=1)
    assert torch.equal(new, again)
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
        data.corrupt_labels(y, 1.5, 10)


def test_digits_and_mnist1d_generate_locally():
    d = data.digits()
    assert d.train.X.shape[1] == 64 and len(d.train) + len(d.test) == 1797
    m = data.mnist1d(num_samples=500)
    assert m.train.X.shape == (400, 40) and m.test.X.shape == (100, 40) and m.num_classes == 10
    state = np.random.get_state()[1].copy()
    data.mnist1d(num_samples=100)
    assert np.array_equal(np.random.get_state()[1], state)  # NumPy's global generator is left alone


def test_data_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="X has 3 examples but y has 2 labels"):
        data.Data(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


@pytest.mark.skipif(not (data.FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_the_real_fashion_mnist_files():
    images, labels = data.fashion_mnist("train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [6000] * 10
    images, labels = data.fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10


def test_standardize_uses_the_training_statistics_per_channel():
    X = torch.zeros(4, 2, 1, 2)
    X[:, 0] = torch.tensor([1.0, 3.0]).view(1, 1, 2)  # channel 0: 1, 3, 1, 3, … → mean 2
    X[:, 1] = torch.arange(4.0).view(4, 1, 1)         # channel 1: 0, 0, 1, 1, 2, 2, 3, 3 → mean 1.5
    test = data.Data(torch.full((1, 2, 1, 2), 2.0), torch.zeros(1, dtype=torch.long))
    s = data.standardize(data.Splits(data.Data(X, torch.zeros(4, dtype=torch.long)), test, None, 2, "toy"))
    flat = s.train.X.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(2))
    torch.testing.assert_close(flat.std(1), torch.ones(2))
    std0 = torch.tensor([1.0, 3.0, 1, 3, 1, 3, 1, 3]).std()
    std1 = torch.tensor([0.0, 0, 1, 1, 2, 2, 3, 3]).std()
    torch.testing.assert_close(s.test.X[0, :, 0, 0], torch.stack([(2 - 2) / std0, (2 - 1.5) / std1]))
    assert s.poison is None and s.name == "toy"


def test_standardize_rejects_a_constant_channel():
    d = data.Data(torch.ones(3, 1, 2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="constant"):
        data.standardize(data.Splits(d, d))


def test_an_interrupted_unpacking_leaves_no_half_filled_folder(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    (src / "data_batch_1").write_bytes(b"x")
    archive = tmp_path / "root" / data.CIFAR10_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")

    def killed(self, path, *args, **kwargs):  # one member written, then the process is interrupted
        (Path(path) / "cifar-10-batches-py").mkdir(parents=True)
        (Path(path) / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", killed)
    with pytest.raises(KeyboardInterrupt):
        data.find_cifar10(root=archive.parent, download=True)
    assert [p.name for p in archive.parent.iterdir()] == [data.CIFAR10_ARCHIVE]
