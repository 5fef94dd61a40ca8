"""Shared fixtures: tiny configs built from the repo's own config files (one source of truth)."""
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import rass_mmseg  # noqa: F401  (registers the plugin)
from tests.utils import repo_path


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
