"""Checks of a batch where it enters a model: an empty batch, and ground-truth labels the model has no class for.

Each gives a one-line ``ValueError`` naming what is wrong (and for labels the file) instead of what would happen
without it: an empty batch ends in ``IndexError: list index out of range`` inside the data preprocessor; a label
outside ``0..num_classes-1`` and ``ignore_index`` ends in cross-entropy's ``IndexError: Target 200 is out of
bounds`` (a device-side assert on a GPU) naming no file, and in validation mmseg's ``IoUMetric`` silently leaves
such pixels out (its histograms count ``0..num_classes-1`` only). mmseg's plain ``LoadAnnotations`` (the texture
configs, custom datasets) reads any label; ``LoadAnnotationsChecked`` checks the raw ADE20K maps, not the model.
"""
import functools
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ['check_batch_not_empty', 'refuse_empty_batches', 'check_label_range']


def check_batch_not_empty(inputs: Optional[Sequence[Any]], owner: str) -> None:
    """One-line error when ``inputs`` (a list of images or a batch tensor) holds no image."""
    if inputs is not None and len(inputs) == 0:
        raise ValueError(f'{owner}: the batch is empty (0 images); a batch needs at least one image')


def _empty_batch_hook(owner: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
    data = args[0] if args else kwargs.get('data')
    if isinstance(data, dict):
        check_batch_not_empty(data.get('inputs'), owner)


def refuse_empty_batches(preprocessor: nn.Module, owner: str) -> None:
    """Make ``preprocessor`` (any mmseg data preprocessor) refuse an empty batch in one line before it runs.

    A forward pre-hook, so it acts however the preprocessor is called: ``train_step``, ``val_step``, ``test_step``
    and a distributed wrapper's training step, which calls the preprocessor itself.
    """
    preprocessor.register_forward_pre_hook(functools.partial(_empty_batch_hook, owner), with_kwargs=True)


def _outside(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    return ((labels < 0) | (labels >= num_classes)) & (labels != ignore_index)


def check_label_range(data_samples: Optional[Sequence[Any]], num_classes: int, ignore_index: int, owner: str,
                      classes_from: str = 'decode_head.num_classes') -> None:
    """One-line error naming the file when a ``gt_sem_seg`` label is neither a class nor ``ignore_index``.

    Costs one device-to-host copy per batch (one flag per image); the offending values are read only on failure.
    Data samples without ``gt_sem_seg`` (inference on images) are skipped.

    Args:
        data_samples: The batch's ``SegDataSample`` s.
        num_classes: Number of classes of the model (labels ``0..num_classes-1``).
        ignore_index: Label of unannotated pixels.
        owner: Name of the model in the message.
        classes_from: Where ``num_classes`` comes from, for the message.
    """
    labelled = [(index, sample.gt_sem_seg.data) for index, sample in enumerate(data_samples or [])
                if 'gt_sem_seg' in sample]
    if not labelled:
        return
    flags = torch.stack([_outside(labels, num_classes, ignore_index).any() for _, labels in labelled]).tolist()
    if not any(flags):
        return
    index, labels = labelled[flags.index(True)]
    bad = torch.unique(labels[_outside(labels, num_classes, ignore_index)]).tolist()
    meta = data_samples[index].metainfo
    seg_map, image = meta.get('seg_map_path'), meta.get('img_path')
    if seg_map is not None:
        where = f'label map {seg_map}' + (f' (image {image})' if image is not None else '')
    else:
        where = 'the label map of ' + (f'image {image}' if image is not None else f'sample {index} of the batch')
    shown = ', '.join(str(value) for value in bad[:5]) + (', ...' if len(bad) > 5 else '')
    raise ValueError(f'{owner}: {where} holds label(s) {shown}, outside the classes 0..{num_classes - 1} and '
                     f'ignore_index {ignore_index}; check the dataset (its classes and reduce_zero_label) against '
                     f'{classes_from} ({num_classes} classes)')
