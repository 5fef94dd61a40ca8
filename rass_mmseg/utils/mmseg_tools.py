"""Run mmseg's own packaged tools (``mmseg/.mim/tools``) with rass_mmseg registered: what tools/train.py and
tools/test.py do (importing this module imports rass_mmseg, which registers the plugin before the tool
reads its config)."""
import contextlib
import os.path as osp
import runpy
import sys
from typing import Iterator

import mmseg
from mmengine.runner import Runner

__all__ = ['MMSEG_TOOLS', 'run_mmseg_tool']

#: The folder of mmseg's packaged tools (``train.py``, ``test.py``, ...).
MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')


def run_mmseg_tool(name: str) -> None:
    """Run ``mmseg/.mim/tools/<name>`` as ``__main__`` with this process's arguments.

    Args:
        name: The tool's file name, e.g. ``'train.py'``.
    """
    script = osp.join(MMSEG_TOOLS, name)
    if not osp.isfile(script):
        raise FileNotFoundError(f'{script} not found: reinstall mmsegmentation==1.2.2 from its wheel')
    sys.argv[0] = script
    checks = _test_inputs_checked() if name == 'test.py' else contextlib.nullcontext()
    with checks:
        runpy.run_path(script, run_name='__main__')


@contextlib.contextmanager
def _test_inputs_checked() -> Iterator[None]:
    """While mmseg's ``test.py`` runs, ``Runner.from_cfg`` first checks the test run's inputs.

    mmseg 1.2.2's ``tools/test.py`` builds ``Runner.from_cfg(cfg)`` itself, ignoring the config's ``runner_type``
    (``InputCheckingRunner``, which checks a training run's inputs), so a missing Stable Diffusion folder,
    checkpoint (``load_from`` is the tool's ``checkpoint`` argument) or test set would surface after the config
    dump, one at a time. This wraps ``Runner.from_cfg`` for the tool's run only and restores it afterwards.
    """
    from rass_mmseg.engine.runners import check_input_paths
    original = Runner.__dict__['from_cfg']

    def from_cfg(cls, cfg):
        check_input_paths(cfg, ['test_dataloader'])
        return original.__func__(cls, cfg)

    Runner.from_cfg = classmethod(from_cfg)
    try:
        yield
    finally:
        Runner.from_cfg = original
