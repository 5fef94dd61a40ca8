"""A prompt source made of a dataset's class names."""
from typing import List, Optional, Sequence

from mmseg.registry import DATASETS, TASK_UTILS

__all__ = ['ClassNamesPrompt']


@TASK_UTILS.register_module()
class ClassNamesPrompt:
    """The class names of a dataset, one phrase each (joined by commas when encoded).

    Args:
        classes: Class names. Exactly one of ``classes`` and ``dataset`` is given.
        dataset: Name of a registered mmseg dataset type (e.g. ``'ADE20KDataset'``) whose
            ``METAINFO['classes']`` are used, so a config never repeats the class list.
        template: Format applied to each name, e.g. ``'a photo of {}'``.
    """

    def __init__(self, classes: Optional[Sequence[str]] = None, dataset: Optional[str] = None,
                 template: str = '{}') -> None:
        if (classes is None) == (dataset is None):
            raise ValueError('ClassNamesPrompt: give exactly one of classes and dataset')
        if dataset is not None:
            dataset_cls = DATASETS.get(dataset)
            if dataset_cls is None:
                raise KeyError(f'ClassNamesPrompt dataset={dataset!r} is not a registered mmseg dataset type')
            classes = dataset_cls.METAINFO.get('classes')
            if not classes:
                raise ValueError(f'ClassNamesPrompt dataset={dataset!r} has no METAINFO classes')
        if not classes or any(not isinstance(c, str) or not c.strip() for c in classes):
            raise ValueError(f'ClassNamesPrompt classes must be non-empty strings, got {classes!r}')
        if '{}' not in template:
            raise ValueError(f"ClassNamesPrompt template must contain '{{}}', got {template!r}")
        self.classes = [str(c) for c in classes]
        self.template = template

    def phrases(self) -> List[str]:
        """One phrase per class."""
        return [self.template.format(c) for c in self.classes]

    def __repr__(self) -> str:
        return f'ClassNamesPrompt({len(self.classes)} classes, template={self.template!r})'
