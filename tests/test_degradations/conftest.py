"""Engine tests run on one intra-op thread (see the fixture)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Run these small-tensor tests on one intra-op thread: on a shared 2-core machine the per-op thread
    barriers cost more than the parallelism gives, and the determinism tests need no threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
