"""tools/analysis_tools/benchmark_degradation.py: every row and the per-operation profile on a tiny run."""

import sys

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
    # mmagic 1.2.0 is installed with the stack (tools/install/install.sh) and imports through rass_mmseg.compat
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


def test_mmagic_transforms_import_through_the_compat_fix_without_a_fake_albumentations():
    transforms = tool.import_mmagic_transforms()
    assert transforms.__name__ == 'mmagic.datasets.transforms.random_degradations'
    # no empty module planted under albumentations' name (other libraries would take it for the real one)
    albumentations = sys.modules.get('albumentations')
    assert albumentations is None or albumentations.__spec__ is not None
    from mmagic.datasets.transforms import albu_function
    assert albu_function.__spec__.origin == 'rass_mmseg.compat.mmagic_imports'
