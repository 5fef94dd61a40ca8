"""End to end: the tiny configs train, save, resume and test through this repo's tools and mmseg's own.

mmseg's packaged tools run as subprocesses, so a fresh interpreter loads the plugin through the config's
``custom_imports`` alone; the other steps run their scripts in-process (:func:`tests.conftest.in_process_tool`)
to save interpreter starts.
"""
import glob
import os
import os.path as osp

import cv2
import mmseg
import pytest
import torch

from rass_mmseg.compat import CHECKPOINT_SAFE_GLOBALS, load_from_local_weights_only
from tests.utils import FAST_TOOLS as FAST
from tests.utils import repo_path, run_tool

MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')


def test_train_resume_and_test_through_tools(tmp_path, in_process_tool):
    cfg = repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py')
    work_dir = str(tmp_path / 'work')
    in_process_tool(repo_path('tools', 'train.py'), cfg, '--work-dir', work_dir, '--cfg-options',
                    'train_cfg.max_iters=2', *FAST)
    first = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(first)
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
        state = torch.load(first, weights_only=True)
    assert state['meta']['iter'] == 2
    assert any('lora_B.seg' in k for k in state['state_dict'])

    # training again into the same work dir without --resume is refused before anything is overwritten
    before = os.path.getmtime(first)
    with pytest.raises(FileExistsError, match='would overwrite'):
        in_process_tool(repo_path('tools', 'train.py'), cfg, '--work-dir', work_dir, '--cfg-options',
                        'train_cfg.max_iters=2', *FAST)
    assert os.path.getmtime(first) == before

    # resume with mmseg's own packaged train.py, unmodified, in a fresh interpreter
    output = run_tool(osp.join(MMSEG_TOOLS, 'train.py'), cfg, '--work-dir', work_dir, '--resume', '--cfg-options',
                      'train_cfg.max_iters=4', *FAST, cwd=str(tmp_path))
    assert 'resumed epoch: 0, iter: 2' in output
    assert 'Iter(train) [3/4]' in output and 'Iter(train) [1/4]' not in output
    last = osp.join(work_dir, 'iter_4.pth')
    assert osp.isfile(last)

    show_dir = 'vis'
    in_process_tool(repo_path('tools', 'test.py'), cfg, last, '--work-dir', str(tmp_path / 'test'), '--show-dir',
                    show_dir, '--cfg-options', *FAST)
    # mmseg's test.py hands --show-dir to the visualizer's LocalVisBackend as its save_dir
    drawn = sorted(glob.glob(str(tmp_path / show_dir / 'vis_data' / 'vis_image' / '*.png')))
    assert len(drawn) == 4, drawn
    image = cv2.imread(drawn[0])
    assert image.shape == (128, 3 * 128, 3)  # input | prediction | ground truth

    output = run_tool(osp.join(MMSEG_TOOLS, 'test.py'), cfg, last, '--work-dir', str(tmp_path / 'test2'),
                      '--cfg-options', *FAST, cwd=str(tmp_path))
    assert 'mIoU' in output


def test_mask2former_config_trains_and_tests_through_mmseg_packaged_tools(tmp_path, in_process_tool):
    cfg = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')
    work_dir = tmp_path / 'work'
    in_process_tool(osp.join(MMSEG_TOOLS, 'train.py'), cfg, '--work-dir', str(work_dir), '--cfg-options',
                    'train_cfg.max_iters=2', *FAST)
    state = load_from_local_weights_only(str(work_dir / 'iter_2.pth'))
    assert state['meta']['iter'] == 2 and any('decode_head.transformer_decoder' in k for k in state['state_dict'])
    in_process_tool(osp.join(MMSEG_TOOLS, 'test.py'), cfg, str(work_dir / 'iter_2.pth'), '--work-dir',
                    str(tmp_path / 'test'), '--out', str(tmp_path / 'pred'), '--cfg-options', *FAST)
    predictions = sorted(glob.glob(str(tmp_path / 'pred' / '*.png')))
    assert len(predictions) == 4
    assert cv2.imread(predictions[0], cv2.IMREAD_UNCHANGED).shape == (128, 128)
