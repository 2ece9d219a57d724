import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    # Small nets on a 2-core machine: fixed threads keep results and run time steady.
    torch.set_num_threads(2)
    yield


@pytest.fixture
def svhn_root(tmp_path):
    """A stand-in SVHN in the real on-disk format (``{split}_32x32.mat``), with an "extra" split to poison from."""
    import numpy as np
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20), ("extra", 60)):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                  "y": (np.arange(n) % 10 + 1).reshape(n, 1)})
    return tmp_path


@pytest.fixture
def cifar_root(tmp_path):
    """A stand-in CIFAR-10 in torchvision's on-disk layout (pickled batches): 100 train, 20 test images."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         b"labels": [i % 10 for i in range(20)]}, f)
    return tmp_path
