"""tools/analysis_tools/benchmark_degradation.py: every row and the per-operation profile on a tiny run."""

import cv2
import pytest
import torch

from tests.utils import load_tool

tool = load_tool('analysis_tools/benchmark_degradation')


@pytest.fixture
def restore_threads():
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv2_threads)


@pytest.mark.parametrize('with_mmagic', [False, True])
def test_rows_and_profile(with_mmagic, restore_threads, capsys):
    if with_mmagic and tool.import_mmagic_transforms() is None:
        pytest.skip('mmagic is optional and not installed')
    results = tool.main(['--batch-sizes', '2', '--size', '48', '--repeats', '1', '--threads', '1', '--profile'] +
                        ([] if with_mmagic else ['--no-mmagic']))
    rows = {'torch, batched', 'torch, batched, test mode', 'torch, per-image loop', 'opencv (CPU path)',
            'opencv, test mode'} | ({'mmagic 1.2.0 (cv2)'} if with_mmagic else set())
    assert set(results[2]) == rows and all(rate > 0 for rate in results[2].values())
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1  # --threads sets both libraries
    printed = capsys.readouterr().out
    profile = printed[printed.index('ms per image'):]
    for operation in ('blur', 'resize', 'noise', 'of which field draws', 'JPEG', 'other', 'total'):
        assert f'  {operation}' in profile
    assert ('mmagic 1.2.0 (cv2)' in profile) == with_mmagic
