"""End to end: the tiny configs train, save, resume and test through this repo's tools and mmseg's own."""
import glob
import os
import os.path as osp
import subprocess
import sys

import cv2
import mmseg
import pytest
import torch

from rass_mmseg.compat import CHECKPOINT_SAFE_GLOBALS
from tests.utils import FAST_TOOLS as FAST
from tests.utils import repo_path, run_tool

MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')


@pytest.mark.parametrize('config', ['rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py',
                                    'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py'])
def test_train_resume_and_test_through_tools(tmp_path, config):
    cfg = repo_path('configs', 'rass', config)
    work_dir = str(tmp_path / 'work')
    run_tool(repo_path('tools', 'train.py'), cfg, '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=2',
             *FAST, cwd=str(tmp_path))
    first = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(first)
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
        state = torch.load(first, weights_only=True)
    assert state['meta']['iter'] == 2
    assert any('lora_B.seg' in k for k in state['state_dict'])

    # training again into the same work dir without --resume is refused before anything is overwritten
    before = os.path.getmtime(first)
    again = subprocess.run([sys.executable, repo_path('tools', 'train.py'), cfg, '--work-dir', work_dir,
                            '--cfg-options', 'train_cfg.max_iters=2', *FAST], cwd=str(tmp_path), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode != 0 and 'would overwrite' in again.stderr
    assert os.path.getmtime(first) == before

    # resume with mmseg's own packaged train.py, unmodified
    output = run_tool(osp.join(MMSEG_TOOLS, 'train.py'), cfg, '--work-dir', work_dir, '--resume', '--cfg-options',
                      'train_cfg.max_iters=4', *FAST, cwd=str(tmp_path))
    assert 'resumed epoch: 0, iter: 2' in output
    assert 'Iter(train) [3/4]' in output and 'Iter(train) [1/4]' not in output
    last = osp.join(work_dir, 'iter_4.pth')
    assert osp.isfile(last)

    show_dir = 'vis'
    output = run_tool(repo_path('tools', 'test.py'), cfg, last, '--work-dir', str(tmp_path / 'test'), '--show-dir',
                      show_dir, '--cfg-options', *FAST, cwd=str(tmp_path))
    assert 'mIoU' in output
    # mmseg's test.py hands --show-dir to the visualizer's LocalVisBackend as its save_dir
    drawn = sorted(glob.glob(str(tmp_path / show_dir / 'vis_data' / 'vis_image' / '*.png')))
    assert len(drawn) == 4, drawn
    image = cv2.imread(drawn[0])
    assert image.shape == (128, 3 * 128, 3)  # input | prediction | ground truth

    output = run_tool(osp.join(MMSEG_TOOLS, 'test.py'), cfg, last, '--work-dir', str(tmp_path / 'test2'),
                      '--cfg-options', *FAST, cwd=str(tmp_path))
    assert 'mIoU' in output
