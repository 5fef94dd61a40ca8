"""Train a segmentor: mmseg's own ``tools/train.py`` with rass_mmseg registered.

Same arguments as mmseg's tool (``config``, ``--work-dir``, ``--resume``, ``--amp``, ``--cfg-options``,
``--launcher``), e.g.::

    python tools/train.py configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch

Configs load the plugin through ``custom_imports`` too, so mmseg's packaged ``mmseg/.mim/tools/train.py``
runs them unmodified; this wrapper only saves looking that script up.
"""
import os.path as osp
import runpy
import sys

import mmseg

import rass_mmseg  # noqa: F401  (registers the plugin before the config is read)

MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')


def run_mmseg_tool(name: str) -> None:
    """Run ``mmseg/.mim/tools/<name>`` as ``__main__`` with this process's arguments."""
    script = osp.join(MMSEG_TOOLS, name)
    if not osp.isfile(script):
        raise FileNotFoundError(f'{script} not found: reinstall mmsegmentation==1.2.2 from its wheel')
    sys.argv[0] = script
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    run_mmseg_tool('train.py')
