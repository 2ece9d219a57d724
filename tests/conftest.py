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
