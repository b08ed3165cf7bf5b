import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Runs the test with one torch thread: the small transforms of the option and type-3
    tests are 10-40x faster on one thread than on two on a loaded 2-core machine (thread-count
    independence itself is tested in test_nufft.py)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
