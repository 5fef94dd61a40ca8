"""Give mmseg 1.2.2's plain ``EncoderDecoder`` the label check of ``RASSEncoderDecoder`` when it holds a RASS
backbone or neck.

A user who swaps our backbone (and neck) into a stock mmseg config keeps mmseg's ``EncoderDecoder``. A dataset whose
label maps hold values the decode head has no class for (a wrong ``reduce_zero_label``, labels of another dataset)
then fails deep inside the loss (``Target 200 is out of bounds``), or, at validation, ``IoUMetric`` silently drops
the pixels.

With this fix ``EncoderDecoder.loss`` and ``EncoderDecoder.predict`` first run
:func:`~rass_mmseg.models.utils.batch_checks.check_label_range` (the check and one-line message of
``RASSEncoderDecoder``, naming the label file) when the segmentor's backbone is a Stable Diffusion backbone of this
package or its neck a ``FeatureProjection``. Models with mmseg's own backbones and necks, and ``RASSEncoderDecoder``
(which checks in its own ``loss`` and ``predict``), run exactly as before.
"""
import functools

from mmseg.models.segmentors import EncoderDecoder

__all__ = ['check_rass_labels', 'install']

_original_loss = EncoderDecoder.loss
_original_predict = EncoderDecoder.predict


def check_rass_labels(segmentor: EncoderDecoder, data_samples) -> None:
    """Raise a one-line ``ValueError`` naming the label file when a ground-truth label of ``data_samples`` is neither
    a class of ``segmentor``'s decode head nor its ``ignore_index`` (only for a plain segmentor with RASS parts).

    Args:
        segmentor: A built ``EncoderDecoder`` (or subclass).
        data_samples: The batch's ``SegDataSample`` s (those without ``gt_sem_seg`` are skipped).
    """
    from rass_mmseg.models.backbones import StableDiffusionBackbone
    from rass_mmseg.models.necks import FeatureProjection
    from rass_mmseg.models.segmentors import RASSEncoderDecoder
    from rass_mmseg.models.utils.batch_checks import check_label_range

    if isinstance(segmentor, RASSEncoderDecoder):
        return  # checks itself
    neck = segmentor.neck if segmentor.with_neck else None
    if not (isinstance(segmentor.backbone, StableDiffusionBackbone) or isinstance(neck, FeatureProjection)):
        return
    head = segmentor.decode_head
    check_label_range(data_samples, head.num_classes, getattr(head, 'ignore_index', 255), type(segmentor).__name__,
                      classes_from='model.decode_head.num_classes')


@functools.wraps(_original_loss)
def _loss_after_label_check(self: EncoderDecoder, inputs, data_samples):
    check_rass_labels(self, data_samples)
    return _original_loss(self, inputs, data_samples)


@functools.wraps(_original_predict)
def _predict_after_label_check(self: EncoderDecoder, inputs, data_samples=None):
    check_rass_labels(self, data_samples)
    return _original_predict(self, inputs, data_samples)


def install() -> None:
    """Run the label check at the start of ``EncoderDecoder.loss`` and ``EncoderDecoder.predict``."""
    EncoderDecoder.loss = _loss_after_label_check
    EncoderDecoder.predict = _predict_after_label_check
