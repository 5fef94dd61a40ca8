"""Narrow, visible fixes of the pinned stack, applied when rass_mmseg is imported (also through a config's
``custom_imports``, which is how mmseg's own tools load the plugin). Each module says what it changes and why:

- :mod:`.checkpoint_loading`: mmengine 0.10.7 checkpoints (ours and those written by stock mmengine) load under
  torch >= 2.6 with ``weights_only=True`` kept on.
- :mod:`.cpu_distributed`: mmengine's ``pytorch`` launcher trains on CPU-only machines (gloo).
- :mod:`.ms_deform_attn`: mmcv's ``MultiScaleDeformableAttention`` (Mask2Former's pixel decoder) runs on a GPU
  when mmcv's compiled ops lack CUDA kernels or the input is bfloat16.
- :mod:`.mmseg_inferencer`: ``MMSegInferencer`` accepts test pipelines whose loader subclasses ``LoadImageFromFile``
  (and refuses a restorer's predictions with one line).
"""
from . import cpu_distributed, mmseg_inferencer, ms_deform_attn  # noqa: F401
from .checkpoint_loading import CHECKPOINT_SAFE_GLOBALS, load_from_local_weights_only

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'load_from_local_weights_only']
