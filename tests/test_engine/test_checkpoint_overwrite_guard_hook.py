from types import SimpleNamespace

import pytest
from mmengine.config import Config

from rass_mmseg.engine import CheckpointOverwriteGuardHook
from tests.utils import repo_path


def test_refuses_to_train_over_existing_checkpoints(tmp_path):
    runner = SimpleNamespace(work_dir=str(tmp_path), _resume=False)
    CheckpointOverwriteGuardHook().before_train(runner)  # empty work dir: fine
    (tmp_path / 'iter_300.pth').write_bytes(b'checkpoint')
    with pytest.raises(FileExistsError, match=r'already holds 1 checkpoint.*iter_300.pth.*--resume'):
        CheckpointOverwriteGuardHook().before_train(runner)
    CheckpointOverwriteGuardHook(allow_overwrite=True).before_train(runner)
    CheckpointOverwriteGuardHook().before_train(SimpleNamespace(work_dir=str(tmp_path), _resume=True))
    assert (tmp_path / 'iter_300.pth').read_bytes() == b'checkpoint'


def test_runnable_configs_install_the_guard():
    cfg = Config.fromfile(repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py'))
    assert cfg.custom_hooks[0].type == 'CheckpointOverwriteGuardHook'
