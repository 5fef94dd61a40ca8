"""Shared fixtures: tiny configs built from the repo's own config files (one source of truth), the tools run
inside the test process, and the split of the cores between pytest-xdist workers (pytest.ini runs ``-n auto``)."""
import functools
import os
from typing import Callable, List, Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.config import config as mmengine_config
from mmengine.registry import init_default_scope

import rass_mmseg  # noqa: F401  (registers the plugin)
from tests.utils import FAST_TRAIN, TINY_SD_FAST, load_tool, repo_path, run_in_process, small_tiny_sd_config

#: At most this many pytest-xdist workers for ``-n auto``: each imports torch, mmseg and diffusers and builds its own
#: models and session fixtures, so more workers than this cost memory for little time on a large machine.
MAX_WORKERS = 4


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most :data:`MAX_WORKERS`."""
    return max(1, min(_cores(), MAX_WORKERS))


def pytest_configure(config) -> None:
    """In an xdist worker, give torch (and the tools it starts, through OMP_NUM_THREADS) its share of the cores:
    two workers with two intra-op threads each on two cores would spend their time waiting on each other."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '0'))
    if workers > 1:
        threads = max(1, _cores() // workers)
        os.environ['OMP_NUM_THREADS'] = str(threads)
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=64)
def _format_code(text: str, style: Tuple[Tuple[str, object], ...]) -> Tuple[str, bool]:
    return _YAPF_FORMAT_CODE(text, style_config=dict(style))


def _memoized_format_code(text: str, style_config=None, **kwargs) -> Tuple[str, bool]:
    """yapf's ``FormatCode`` memoized on (text, style): an mmengine Runner formats the same config text up to five
    times (its log, the dumped config, the runtime info, each checkpoint's meta), about 0.5 s each for these
    configs. The result is yapf's own string, so what is logged and saved is unchanged."""
    if kwargs or not isinstance(style_config, dict):
        return _YAPF_FORMAT_CODE(text, style_config=style_config, **kwargs)
    return _format_code(text, tuple(sorted(style_config.items())))


_YAPF_FORMAT_CODE = mmengine_config.FormatCode
mmengine_config.FormatCode = _memoized_format_code


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


@pytest.fixture(scope='session')
def made_tiny_sd(tmp_path_factory) -> Tuple[str, str]:
    """``(root, config)``: ``tools/misc/make_tiny_sd.py`` run once per session with :data:`tests.utils.TINY_SD_FAST` on
    :func:`tests.utils.small_tiny_sd_config`; the finished folder is ``root/tiny_sd``. Read it, never write it."""
    root = tmp_path_factory.mktemp('made_tiny_sd')
    config = small_tiny_sd_config(root)
    load_tool('misc/make_tiny_sd').main([config, *TINY_SD_FAST])
    return str(root), config
