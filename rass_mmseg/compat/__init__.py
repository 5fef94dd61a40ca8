"""Narrow, visible fixes of the pinned stack, applied when rass_mmseg is imported.

- :mod:`.checkpoint_loading`: mmengine 0.10.7 checkpoints load under torch >= 2.6 with
  ``weights_only=True`` kept on.
- :mod:`.cpu_distributed`: mmengine's ``pytorch`` launcher trains on CPU-only machines (gloo).
- :mod:`.mmseg_inferencer`: ``MMSegInferencer`` accepts test pipelines whose loader subclasses ``LoadImageFromFile``
  (and refuses a restorer's predictions with one line).
"""
from . import cpu_distributed  # noqa: F401
from . import mmseg_inferencer  # noqa: F401
from .checkpoint_loading import CHECKPOINT_SAFE_GLOBALS, load_from_local_weights_only

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'load_from_local_weights_only']
