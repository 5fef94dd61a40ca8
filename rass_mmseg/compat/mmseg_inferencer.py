"""Let mmseg 1.2.2's ``MMSegInferencer`` run configs whose test pipeline loads images with a subclass of
mmcv's ``LoadImageFromFile`` (e.g. :class:`~rass_mmseg.datasets.LoadImageFromFileChecked`), and refuse a model
without segmentation output with a one-line error.

``MMSegInferencer._init_pipeline`` looks the loader up by its exact type name, ``'LoadImageFromFile'``, and raises
``ValueError: LoadImageFromFile is not found in the test pipeline`` for any other name; it then replaces that
step by mmseg's ``InferencerLoader``, which reads file inputs with a plain ``LoadImageFromFile`` built from the
step's arguments and array inputs with ``LoadImageFromNDArray``.

With this fix, when the first image loader of ``test_dataloader.dataset.pipeline`` is a *subclass* of
``LoadImageFromFile`` (given by name or as a class), mmseg's own ``_init_pipeline`` runs on the pipeline with that
step named ``LoadImageFromFile``, and the ``InferencerLoader`` it builds then reads file inputs with the
config's own loader (same arguments), so a damaged file fails as it does in ``tools/test.py``. Array inputs, and
configs whose loader is ``LoadImageFromFile`` itself or is missing, go through mmseg's code unchanged.

A model whose predictions hold no segmentation map (a restorer such as SCR: ``restored_img`` only) makes mmseg's
``postprocess`` raise a bare ``StopIteration``; it now raises a ``ValueError`` that says to call the inferencer
with ``return_datasamples=True`` (the data samples, and the drawings in ``out_dir`` still work).

Both are installed when ``rass_mmseg`` is imported; a config's ``custom_imports`` does that inside
``Config.fromfile``, before the inferencer builds its pipeline.
"""
import copy
from typing import List, Optional, Sequence

from mmcv.transforms import Compose, LoadImageFromFile
from mmseg.apis.mmseg_inferencer import MMSegInferencer
from mmseg.datasets.transforms.loading import InferencerLoader, LoadImageFromNDArray
from mmseg.registry import TRANSFORMS
from mmseg.structures import SegDataSample
from mmseg.utils import ConfigType

__all__ = ['install', 'loader_subclass_index']

_original_init_pipeline = MMSegInferencer._init_pipeline
_original_postprocess = MMSegInferencer.postprocess
_MAP_KEYS = ('pred_sem_seg', 'pred_depth_map')  # what mmseg's postprocess turns into predictions


def loader_subclass_index(pipeline_cfg: Sequence[dict]) -> Optional[int]:
    """Index of the pipeline's first image loader when that loader is a proper subclass of ``LoadImageFromFile``.

    Args:
        pipeline_cfg: Transform configs; ``type`` is a registered name or a class.

    Returns:
        The index, or ``None`` when the first loader is ``LoadImageFromFile`` itself, when there is none, or when
        the type is not registered (mmseg's own lookup then decides, with its own error).
    """
    for index, transform in enumerate(pipeline_cfg):
        kind = transform.get('type')
        cls = kind if isinstance(kind, type) else TRANSFORMS.get(kind) if isinstance(kind, str) else None
        if not isinstance(cls, type) or not issubclass(cls, LoadImageFromFile):
            continue
        if issubclass(cls, LoadImageFromNDArray):  # an array loader cannot read the files the inferencer gets
            return None
        return None if cls is LoadImageFromFile else index
    return None


def _init_pipeline(self: MMSegInferencer, cfg: ConfigType) -> Compose:
    """mmseg's ``_init_pipeline``; a loader subclass reads the file inputs (see the module docstring)."""
    pipeline_cfg = cfg.test_dataloader.dataset.pipeline
    index = loader_subclass_index(pipeline_cfg)
    if index is None:
        return _original_init_pipeline(self, cfg)
    loader_cfg = copy.deepcopy(pipeline_cfg[index])
    pipeline_cfg[index] = dict(loader_cfg, type='LoadImageFromFile')
    pipeline = _original_init_pipeline(self, cfg)
    inferencer_loader = next(step for step in pipeline.transforms if isinstance(step, InferencerLoader))
    inferencer_loader.from_file = TRANSFORMS.build(loader_cfg)
    return pipeline


def _postprocess(self: MMSegInferencer,
                 preds: List[SegDataSample],
                 visualization: Optional[List],
                 return_datasample: bool = False,
                 pred_out_dir: str = '') -> dict:
    """mmseg's ``postprocess``; predictions without a map are refused unless the data samples are asked for."""
    if not return_datasample:
        for pred in preds:
            if not any(key in pred for key in _MAP_KEYS):
                raise ValueError(f'MMSegInferencer returns segmentation maps and this model predicts none (its data '
                                 f'samples hold {sorted(pred.keys())}; a restorer such as SCR): call the inferencer '
                                 'with return_datasamples=True to get the data samples')
    return _original_postprocess(self, preds, visualization, return_datasample, pred_out_dir)


def install() -> None:
    """Apply both fixes (idempotent)."""
    MMSegInferencer._init_pipeline = _init_pipeline
    MMSegInferencer.postprocess = _postprocess
