"""Run this repo's ``tools/train.py`` inside the test process (the imports alone take ~20 s per new process)."""
import itertools
import os
import runpy
import sys
from typing import Callable, List

import pytest
import torch

from tests.utils import FAST_TRAIN, repo_path

_run_ids = itertools.count()


@pytest.fixture
def train_tool(monkeypatch, tmp_path) -> Callable[..., None]:
    """``train_tool(config, work_dir, *cfg_options, resume=False)`` runs ``python tools/train.py`` in-process.

    Exactly the tool's code path (mmseg's ``train.py`` through ``runpy``), with a fresh experiment and visualizer
    name per run (mmengine keeps those as process-wide singletons), and the process's global state (argv,
    LOCAL_RANK, deterministic algorithms) restored afterwards.
    """
    monkeypatch.chdir(tmp_path)  # relative paths of the config (data/textures, work_dirs) land in tmp_path
    monkeypatch.setattr(sys, 'argv', list(sys.argv))
    monkeypatch.setenv('LOCAL_RANK', '0')
    deterministic = torch.are_deterministic_algorithms_enabled()

    def train(config: str, work_dir: str, *cfg_options: str, resume: bool = False) -> None:
        run = next(_run_ids)
        argv: List[str] = [repo_path('tools', 'train.py'), config, '--work-dir', str(work_dir)]
        if resume:
            argv.append('--resume')
        argv += ['--cfg-options', f'experiment_name=reliability_{os.getpid()}_{run}',
                 f'visualizer.name=reliability_{os.getpid()}_{run}', *FAST_TRAIN, *cfg_options]
        sys.argv = argv
        try:
            runpy.run_path(argv[0], run_name='__main__')
        finally:
            torch.use_deterministic_algorithms(deterministic)

    yield train
    torch.use_deterministic_algorithms(deterministic)
