"""ADE20K-format evaluation sets (ADE20K-LQ, RealLQ) with their labels in either of the two released formats.

The public RASS code is a detectron2 project: it evaluates on detectron2's ``ade20k_sem_seg_val``, i.e.
``ADEChallengeData2016/images/validation/*.jpg`` with labels in ``ADEChallengeData2016/annotations_detectron2/
validation/*.png`` (0..149, 255 = ignore), under a root named by ``DETECTRON2_DATASETS``. Its README ships
ADE20K-LQ as degraded validation images that replace ``images/validation`` and RealLQ as such a root
(``export DETECTRON2_DATASETS=/path/to/RealLQ``). mmseg's ADE20K instead reads ``annotations/validation`` (0..150,
0 = other) with ``reduce_zero_label=True``. :class:`ADE20KFormatDataset` reads either, chosen by ``label_format``,
and refuses label maps of the other format (see :mod:`rass_mmseg.datasets.transforms.load_annotations_checked`).
"""
import os.path as osp
from typing import Callable, List, Sequence, Union

import numpy as np
from mmseg.datasets import ADE20KDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS

from .transforms.load_annotations_checked import LoadAnnotationsChecked, check_label_values, read_label_map

__all__ = ['ADE20KFormatDataset', 'LABEL_FORMATS']

#: label_format -> reduce_zero_label.
LABEL_FORMATS = {'ade20k': True, 'detectron2': False}
_LOADERS = ('LoadAnnotations', 'mmseg.LoadAnnotations')


@DATASETS.register_module()
class ADE20KFormatDataset(ADE20KDataset):
    """The 150 ADE20K classes in ADE20K's folder layout, labels in ADE20K's or detectron2's format.

    Every label map is checked when it is loaded: the pipeline's ``LoadAnnotations`` step is replaced by
    :class:`~rass_mmseg.datasets.transforms.LoadAnnotationsChecked` (same output; its ``reduce_zero_label``
    argument, which mmseg's ADE20K configs fix to True, gives way to ``label_format``, as mmseg itself asks for the
    dataset to own that setting). So any mmseg ADE20K config (512 or 640 test pipelines) reads both formats.
    When the dataset is initialised, the first ``check_label_maps`` maps are read and checked as well, and a
    dataset read as detectron2 style none of whose checked maps holds the ignore value is refused: ADE20K-style
    maps never hold it, and nearly every human-annotated map has some unlabelled pixels, so such a dataset is
    almost surely ADE20K style read with the wrong format (every class shifted by one).

    Args:
        label_format: ``'ade20k'`` (values 0..150, 0 = other; ``reduce_zero_label=True``) or ``'detectron2'``
            (values 0..149, 255 = ignore; ``reduce_zero_label=False``).
        check_label_maps: How many label maps (in file order) to check when the dataset is initialised; 0 turns
            the dataset-level check off (the per-map check at load time stays).
        **kwargs: :class:`mmseg.datasets.ADE20KDataset` arguments (``data_root``, ``data_prefix``, ``img_suffix``,
            ``pipeline``, ...). ``reduce_zero_label``, if given, must agree with ``label_format``.
    """

    def __init__(self, label_format: str = 'ade20k', check_label_maps: int = 32, **kwargs) -> None:
        if label_format not in LABEL_FORMATS:
            raise ValueError(f'ADE20KFormatDataset: label_format must be one of {sorted(LABEL_FORMATS)}, got '
                             f'{label_format!r}')
        reduce_zero_label = LABEL_FORMATS[label_format]
        if kwargs.setdefault('reduce_zero_label', reduce_zero_label) != reduce_zero_label:
            raise ValueError(f'ADE20KFormatDataset: reduce_zero_label={kwargs["reduce_zero_label"]} contradicts '
                             f'label_format={label_format!r} (which reads with reduce_zero_label={reduce_zero_label}); '
                             'set label_format only')
        if not isinstance(check_label_maps, int) or check_label_maps < 0:
            raise ValueError(f'ADE20KFormatDataset: check_label_maps must be an int >= 0, got {check_label_maps!r}')
        self.label_format = label_format
        self.check_label_maps = check_label_maps
        self.num_raw_classes = len(self.METAINFO['classes'])
        kwargs['pipeline'] = self._checked_pipeline(kwargs.get('pipeline', []), kwargs.get('ignore_index', 255))
        super().__init__(**kwargs)

    def _checked_pipeline(self, pipeline: Sequence[Union[dict, Callable]], ignore_index: int) -> List:
        """The pipeline with ``LoadAnnotations`` replaced by ``LoadAnnotationsChecked`` (other steps untouched)."""
        checked = []
        for step in pipeline:
            if isinstance(step, dict) and step.get('type') in _LOADERS:
                options = {k: v for k, v in step.items() if k not in ('type', 'reduce_zero_label')}
                step = dict(type='LoadAnnotationsChecked', num_classes=self.num_raw_classes,
                            ignore_index=ignore_index, **options)
            elif isinstance(step, LoadAnnotations) and not isinstance(step, LoadAnnotationsChecked):
                step = LoadAnnotationsChecked(self.num_raw_classes, ignore_index=ignore_index,
                                              backend_args=step.backend_args, imdecode_backend=step.imdecode_backend)
            checked.append(step)
        return checked

    def full_init(self) -> None:
        """Load the file list, then check the first ``check_label_maps`` label maps."""
        if self._fully_initialized:
            return
        super().full_init()
        self._check_first_label_maps()

    def _check_first_label_maps(self) -> None:
        count = min(self.check_label_maps, len(self))
        if not count:
            return
        holds_ignore = False
        for index in range(count):
            path = self.get_data_info(index).get('seg_map_path')
            if path is None:
                return  # no labels (seg_map_path unset): nothing to check
            values = np.unique(read_label_map(path, self.backend_args))
            check_label_values(values, path, self.reduce_zero_label, self.num_raw_classes, self.ignore_index)
            holds_ignore = holds_ignore or bool((values == self.ignore_index).any())
        if self.label_format == 'detectron2' and not holds_ignore:
            folder = osp.dirname(path)
            raise ValueError(f'{folder}: none of the first {count} label maps holds {self.ignore_index}, the ignore '
                             'value of detectron2-style maps; these look like ADE20K-style maps (0 = other), which '
                             "label_format='detectron2' would shift by one class: set label_format='ade20k' (or "
                             'check_label_maps=0 if your detectron2-style maps have no unlabelled pixel)')
