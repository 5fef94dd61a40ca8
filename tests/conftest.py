"""Shared fixtures: tiny configs built from the repo's own config files (one source of truth), and the tools run
inside the test process."""
import functools
from typing import Callable, List

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import rass_mmseg  # noqa: F401  (registers the plugin)
from tests.utils import FAST_TRAIN, repo_path, run_in_process


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Every test builds in mmseg's scope (a Runner made by an earlier test may have switched it)."""
    init_default_scope('mmseg')


@pytest.fixture(scope='session')
def tiny_cfg() -> Config:
    return Config.fromfile(repo_path('configs', '_base_', 'models', 'rass_tiny-sd_segformer-head.py'))


@pytest.fixture
def tiny_backbone_cfg(tiny_cfg) -> dict:
    return tiny_cfg.model.backbone.to_dict()


@pytest.fixture
def in_process_tool(tmp_path) -> Callable[..., None]:
    """``in_process_tool(script, *args)``: :func:`tests.utils.run_in_process` from ``tmp_path``."""
    return functools.partial(run_in_process, cwd=str(tmp_path))


@pytest.fixture
def train_tool(in_process_tool) -> Callable[..., None]:
    """``train_tool(config, work_dir, *cfg_options, resume=False)`` runs this repo's ``tools/train.py`` in-process
    with :data:`tests.utils.FAST_TRAIN` settings (see :func:`in_process_tool`)."""

    def train(config: str, work_dir: str, *cfg_options: str, resume: bool = False) -> None:
        args: List[str] = [config, '--work-dir', str(work_dir)]
        if resume:
            args.append('--resume')
        in_process_tool(repo_path('tools', 'train.py'), *args, '--cfg-options', *FAST_TRAIN, *cfg_options)

    return train
