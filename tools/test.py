"""Test a segmentor: mmseg's own ``tools/test.py`` with rass_mmseg registered.

Same arguments as mmseg's tool (``config``, ``checkpoint``, ``--work-dir``, ``--out``, ``--show``,
``--show-dir``, ``--cfg-options``, ``--launcher``, ``--tta``), e.g.::

    python tools/test.py configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py \
        work_dirs/.../iter_300.pth \
        --show-dir vis

With our configs, ``--show-dir`` writes input | prediction | ground truth side by side
(``SideBySideSegVisualizer``).
"""
from rass_mmseg.utils import run_mmseg_tool

if __name__ == '__main__':
    run_mmseg_tool('test.py')
