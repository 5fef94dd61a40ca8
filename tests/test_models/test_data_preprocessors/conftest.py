"""Preprocessor tests run on one intra-op thread."""
import pytest

from tests.utils import one_intra_op_thread


@pytest.fixture(autouse=True)
def single_thread():
    """See :func:`tests.utils.one_intra_op_thread`."""
    with one_intra_op_thread():
        yield
