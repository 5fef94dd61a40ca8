"""Run mmseg's own packaged tools (``mmseg/.mim/tools``) with rass_mmseg registered: what tools/train.py and
tools/test.py do (importing this module imports rass_mmseg, which registers the plugin before the tool
reads its config)."""
import os.path as osp
import runpy
import sys

import mmseg

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
    runpy.run_path(script, run_name='__main__')
