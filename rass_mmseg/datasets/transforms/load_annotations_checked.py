"""mmseg's ``LoadAnnotations`` that refuses a label map whose values do not fit the label format it is read as.

ADE20K's 150 classes reach us in two label formats, and reading one as the other shifts every class by one
without any error:

- ADE20K style (``ADEChallengeData2016/annotations``, mmseg's ``ADE20KDataset``): uint8 values 0..150, 0 =
  "other" (not scored), 1..150 = the classes. Read with ``reduce_zero_label=True`` (0 -> 255, v -> v - 1).
- detectron2 style (``annotations_detectron2``, written by Mask2Former's ``prepare_ade20k_sem_seg.py``, which
  subtracts 1 in uint8 so 0 wraps to 255; what detectron2's ``ade20k_sem_seg_val`` and the public RASS code
  read): 0..149 = the classes, 255 = ignore. Read with ``reduce_zero_label=False``.

A detectron2 map read as ADE style turns "wall" into "ignore" and class k into k - 1; an ADE map read as detectron2
style turns "other" into "wall" and class k into k + 1 (class 150 "flag" falls out of the scored range). The raw
values tell the formats apart where they differ: 255 only exists in detectron2 maps, 150 only in ADE maps (values
151..254 exist in neither). :class:`LoadAnnotationsChecked` checks the raw values of every map it loads against the
format it reads (``reduce_zero_label``) and raises a one-line ``ValueError`` naming the file otherwise; a map that
holds neither value is the same in both formats' value range and passes (the dataset-level check of
:class:`~rass_mmseg.datasets.ADE20KFormatDataset` covers whole datasets of such maps).
"""
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

__all__ = ['LoadAnnotationsChecked', 'check_label_values', 'read_label_map']


def read_label_map(path: str, backend_args: Optional[dict] = None, imdecode_backend: str = 'pillow') -> np.ndarray:
    """The raw uint8 values of a label map, read as mmseg's ``LoadAnnotations`` reads them (palette PNGs give indices).

    Raises:
        FileNotFoundError: The file is missing (one line, naming it).
    """
    try:
        content = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError:
        raise FileNotFoundError(f'{path}: label map not found (its image exists; expected a label map of the same '
                                'name under seg_map_path)') from None
    return mmcv.imfrombytes(content, flag='unchanged', backend=imdecode_backend).squeeze().astype(np.uint8)


def check_label_values(values: np.ndarray, path: str, reduce_zero_label: bool, num_classes: int,
                       ignore_index: int = 255) -> None:
    """Raise a one-line ``ValueError`` when raw label values do not fit the format given by ``reduce_zero_label``.

    Args:
        values: Raw label values (any shape; e.g. ``np.unique`` of a map).
        path: The label map, named in the error.
        reduce_zero_label: True: ADE20K style (0 = other, 1..num_classes = classes); False: detectron2 style
            (0..num_classes - 1 = classes, ``ignore_index`` = ignore).
        num_classes: Number of classes of the raw maps (150 for ADE20K).
        ignore_index: The ignore value of detectron2-style maps.
    """
    values = np.unique(values)
    if reduce_zero_label:
        bad = values[values > num_classes]
        if not bad.size:
            return
        hint = (f'; {ignore_index} marks ignored pixels in detectron2-style maps (annotations_detectron2: '
                f'0..{num_classes - 1}, {ignore_index} = ignore): read them with label_format=\'detectron2\' '
                '(reduce_zero_label=False)' if ignore_index in bad else '')
        raise ValueError(f'{path}: label values {bad.tolist()} do not fit ADE20K-style label maps (0 = other, '
                         f'1..{num_classes} = classes) that label_format=\'ade20k\' (reduce_zero_label=True) '
                         f'reads{hint}')
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if not bad.size:
        return
    hint = (f'; {num_classes} is the last class of ADE20K-style maps (0 = other, 1..{num_classes} = classes): read '
            'them with label_format=\'ade20k\' (reduce_zero_label=True)' if num_classes in bad else '')
    raise ValueError(f'{path}: label values {bad.tolist()} do not fit detectron2-style label maps '
                     f'(0..{num_classes - 1} = classes, {ignore_index} = ignore) that label_format=\'detectron2\' '
                     f'(reduce_zero_label=False) reads{hint}')


@TRANSFORMS.register_module()
class LoadAnnotationsChecked(LoadAnnotations):
    """Load a label map like mmseg's ``LoadAnnotations``, after checking its raw values against the label format.

    Same keys and output as :class:`mmseg.datasets.transforms.LoadAnnotations` (``gt_seg_map`` after
    ``reduce_zero_label`` and the dataset's ``label_map``). The raw values must fit the format that
    ``reduce_zero_label`` reads (see the module docstring); otherwise a one-line ``ValueError`` names the file.

    Args:
        num_classes: Number of classes of the raw label maps (150 for ADE20K), whatever class subset the dataset
            keeps.
        reduce_zero_label: None (default): the dataset's, as mmseg recommends. A bool must equal the dataset's.
        ignore_index: The ignore value of maps read without ``reduce_zero_label``.
        backend_args: mmengine file backend arguments.
        imdecode_backend: ``mmcv.imfrombytes`` backend (``'pillow'`` reads palette PNGs as indices).
    """

    def __init__(self,
                 num_classes: int,
                 reduce_zero_label: Optional[bool] = None,
                 ignore_index: int = 255,
                 backend_args: Optional[dict] = None,
                 imdecode_backend: str = 'pillow') -> None:
        if not isinstance(num_classes, int) or not 0 < num_classes < 255:
            raise ValueError(f'LoadAnnotationsChecked: num_classes must be an int in 1..254 (uint8 label maps), got '
                             f'{num_classes!r}')
        super().__init__(reduce_zero_label=reduce_zero_label, backend_args=backend_args,
                         imdecode_backend=imdecode_backend)
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        reduce_zero_label = results['reduce_zero_label'] if self.reduce_zero_label is None else self.reduce_zero_label
        if reduce_zero_label != results['reduce_zero_label']:
            raise ValueError(f'LoadAnnotationsChecked: reduce_zero_label={reduce_zero_label} but the dataset reads '
                             f'{path} with reduce_zero_label={results["reduce_zero_label"]}; leave it unset (None)')
        label = read_label_map(path, self.backend_args, self.imdecode_backend)
        check_label_values(label, path, reduce_zero_label, self.num_classes, self.ignore_index)
        if reduce_zero_label:
            label = label.copy()
            label[label == 0] = 255  # 255 - 1 = 254 -> back to 255 below, as in mmseg
            label = label - 1
            label[label == 254] = 255
        label_map = results.get('label_map')
        if label_map:
            original = label.copy()
            for old_id, new_id in label_map.items():
                label[original == old_id] = new_id
        results['gt_seg_map'] = label
        results['seg_fields'].append('gt_seg_map')

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_classes={self.num_classes}, reduce_zero_label={self.reduce_zero_label}, '
                f'ignore_index={self.ignore_index}, imdecode_backend={self.imdecode_backend!r}, '
                f'backend_args={self.backend_args})')
