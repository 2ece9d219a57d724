import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    # Small nets on a 2-core machine: fixed threads keep results and run time steady.
    torch.set_num_threads(2)
    yield
