"""Train a segmentor: mmseg's own ``tools/train.py`` with rass_mmseg registered.

Same arguments as mmseg's tool (``config``, ``--work-dir``, ``--resume``, ``--amp``, ``--cfg-options``,
``--launcher``), e.g.::

    python tools/train.py configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch

Configs load the plugin through ``custom_imports`` too, so mmseg's packaged ``mmseg/.mim/tools/train.py``
runs them unmodified; this wrapper only saves looking that script up
(:func:`rass_mmseg.utils.run_mmseg_tool`).
"""
from rass_mmseg.utils import run_mmseg_tool

if __name__ == '__main__':
    run_mmseg_tool('train.py')
